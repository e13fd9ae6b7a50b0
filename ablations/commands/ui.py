"""`ablate ui`: the MLflow UI on this work directory's store, on 127.0.0.1 by default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")


def run(args) -> int:
    from ablations.cli import UsageError

    db = args.workdir / "mlflow.db"
    if not db.exists():
        raise UsageError(f"no MLflow store at {db}: run a study first (ablate run STUDY.yaml --workdir {args.workdir})")
    command = [sys.executable, "-m", "mlflow", "ui",
               "--backend-store-uri", f"sqlite:///{db}",  # as ablations.tracking.default_tracking_uri
               "--default-artifact-root", (args.workdir / "artifacts").as_uri(),
               "--host", args.host, "--port", str(args.port), "--workers", "1"]
    # One browsing user: one worker.
    base = f"http://{args.host}:{args.port}"
    lines = [f"MLflow UI for {args.workdir}: {base}  (Ctrl-C to stop)"]
    for name, url, dashboard in study_urls(f"sqlite:///{db}", base):
        lines.append(f"  {name}: {url}" + (f"\n    dashboard: {dashboard}" if dashboard else ""))
    return serve(command, "\n".join(lines))


# The UI's navigation follows a per-browser choice between "GenAI" (the default) and "Model
# training"; this query parameter selects the latter for the page it opens.
TRAINING_VIEW = "workflowType=machine_learning"


def study_urls(tracking_uri: str, base: str) -> list[tuple[str, str, str | None]]:
    """(study, URL of its runs table, URL of its newest dashboard or None) per experiment. The URLs open
    MLflow's model-training view; experiments written before the platform tagged them get the tag that
    makes that view the default."""
    from ablations.tracking import EXPERIMENT_KIND, KIND, MODEL_TRAINING, dashboard_path, open_client

    client = open_client(tracking_uri)
    urls = []
    for experiment in sorted(client.search_experiments(), key=lambda e: e.name):
        if experiment.name == "Default":
            continue
        if experiment.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING:
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        studies = client.search_runs([experiment.experiment_id], f"tags.`{KIND}` = 'study'", max_results=1,
                                     order_by=["attributes.start_time DESC"])
        dashboard = None
        if studies and any(a.path == "dashboard.html" for a in client.list_artifacts(studies[0].info.run_id)):
            dashboard = f"{base}/{dashboard_path(experiment.experiment_id, studies[0].info.run_id)}?{TRAINING_VIEW}"
        urls.append((experiment.name, f"{base}/#/experiments/{experiment.experiment_id}/runs?{TRAINING_VIEW}",
                     dashboard))
    return urls


def serve(command: list[str], banner: str) -> int:
    """Run an MLflow server command until it exits, Ctrl-C or SIGTERM; print `banner` once it started."""
    # No GenAI job runner (a dozen extra processes nobody here uses).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # Its own process group, so stopping it stops uvicorn's workers too.
    server = subprocess.Popen(command, env=env, start_new_session=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(_stop(server)))
    print(banner, flush=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return _stop(server)
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> int:
    """Stop the server's whole process group: politely, then for sure."""
    for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break  # the group is gone
        try:
            server.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return 0
