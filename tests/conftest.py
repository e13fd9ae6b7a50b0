"""Shared fixtures: one real Ray session for the whole test session, MLflow sqlite URIs.

Ray costs ~4 s to start and ~1.5 s to stop, so every test that needs it shares
`ray_session` (2 CPUs, trials keep the test's working directory). Tests use
absolute sqlite URIs in tmp_path: a relative one would land in Ray's trial folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No Chromium screenshot of every dashboard a test builds (dashboards.screenshot.log_top).
os.environ.setdefault("ABLATE_DASHBOARD_PNG", "0")


def sqlite_uri(path: Path) -> str:
    """An absolute MLflow sqlite URI for a database file."""
    return f"sqlite:///{Path(path).absolute()}"


@pytest.fixture
def mlflow_uri(tmp_path) -> str:
    """A fresh, empty MLflow store for one test."""
    return sqlite_uri(tmp_path / "mlflow.db")


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray with 2 CPUs, shared by the test session; yields its address
    (so subprocesses can join it with `--address`)."""
    import ray

    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    if ray.is_initialized():
        yield ray.get_runtime_context().gcs_address
        return
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
                       runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}})
    yield context.address_info["address"]
    ray.shutdown()
