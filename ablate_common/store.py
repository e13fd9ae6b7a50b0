"""Opening the MLflow store."""

from __future__ import annotations

import fcntl
from pathlib import Path


def open_client(tracking_uri: str):
    """An `MlflowClient` for `tracking_uri`; a sqlite store is opened under a file lock.

    MLflow's client creates (or migrates) a new sqlite database as it is constructed,
    with alembic migrations, and two processes doing it at once (the driver and a
    worker, or `ablate ui`) fail with 'table _alembic_tmp_experiments already exists'
    or 'Online migration expected to match one row'. So the construction itself waits
    for the lock. A missing folder is left alone: the caller reports it, nothing is created."""
    from mlflow import MlflowClient

    if not tracking_uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri)
    db = Path(tracking_uri[len("sqlite:///"):])
    if not db.parent.is_dir():
        return MlflowClient(tracking_uri)
    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        client = MlflowClient(tracking_uri)
        client.search_experiments(max_results=1)  # opens the store: tables created or upgraded
    return client
