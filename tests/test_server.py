"""`ablate server`: a real MLflow tracking server (sqlite database, proxied artifacts) that
a study logs to over HTTP; its artifacts land under the server's artifacts destination,
not in the client's work directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from ablations import tracking
from ablations.cli import main

pytestmark = pytest.mark.slow
_SCRIPT = Path(sys.executable).with_name("ablate")
ABLATE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ablations.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """(url, server folder, its log) of `ablate server` on a free port, stopped (its whole group) after the tests."""
    tmp = tmp_path_factory.mktemp("server")
    port, home = free_port(), tmp / "server-home"
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([*ABLATE, "server", "--workdir", str(home), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp / "server.log").read_text()
            assert time.monotonic() < deadline, "the MLflow server did not become healthy in 90 s"
            time.sleep(0.5)
        yield url, home / "server", tmp / "server.log"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_server_binds_localhost_and_prints_the_tracking_uri(mlflow_server):
    url, home, log = mlflow_server
    text = log.read_text()
    assert f"--tracking-uri {url}" in text
    assert (home / "mlflow.db").exists()  # the database backend
    port = int(url.rsplit(":", 1)[1])
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    if listening:  # ss is there: every listening socket of the port is on 127.0.0.1 only
        assert {line.split()[3] for line in listening.splitlines()} == {f"127.0.0.1:{port}"}


def test_a_study_logs_to_the_server_and_its_artifacts_land_on_the_server(tmp_path, mlflow_server, ray_session):
    url, home, _ = mlflow_server
    study = tmp_path / "remote.yaml"
    study.write_text(yaml.safe_dump({
        "name": "remote", "profile": "smoke", "factors": {"model.mim.mask_ratio": [0.5, 0.75]}, "seeds": [0],
        "data": {"pretrain": "synth_pairs"}, "tasks": ["synth_vqa"],
        "metric": {"name": "synth_vqa/overall_acc", "mode": "max"}, "resources": {"cpu": 1}}))
    workdir = tmp_path / "client"
    assert main(["run", str(study), "--workdir", str(workdir), "--tracking-uri", url]) == 0

    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("remote")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # proxied through the server
    tracker = tracking.Tracker(url)
    trials = tracker.runs(experiment.experiment_id, f"tags.`{tracking.KIND}` = 'trial'")
    assert len(trials) == 2 and {r.info.status for r in trials} == {"FINISHED"}
    assert all("synth_vqa/overall_acc" in r.data.metrics for r in trials)
    pretrains = tracker.runs(experiment.experiment_id, f"tags.`{tracking.KIND}` = 'pretrain'")
    assert pretrains
    pngs = [a.path for a in client.list_artifacts(pretrains[0].info.run_id, "reconstructions")]
    assert pngs and all(p.endswith(".png") for p in pngs)

    # the bytes are on the server's disk, under its artifacts destination
    on_server = list((home / "artifacts").rglob("*.png"))
    assert {Path(p).name for p in pngs} <= {p.name for p in on_server}
    assert list((home / "artifacts").rglob("config.yaml"))
    assert not (workdir / "artifacts").exists()  # where a local store would have put them
    assert not (workdir / "mlflow.db").exists()


def test_server_rejects_a_relative_sqlite_path(tmp_path, capsys):
    assert main(["server", "--workdir", str(tmp_path), "--backend-store-uri", "sqlite:///rel.db"]) == 2
    assert "must be absolute" in capsys.readouterr().err
