"""Faults, each on the smoke profile with the real Ray session and a real MLflow store:
a SIGKILLed driver (and a second driver refused by the study lock), trials whose worker
raises, runs out of memory, diverges or is killed (then `--retry-failed`), and a tracking
server that goes away in the middle of a trial. Failures are injected with the test-only
ABLATE_FAULT hook (ablations/faults.py)."""

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

from ablations import faults, tracking
from ablations.cli import main
from ablations.spec import parse_spec
from ablations.study import expand
from fixtures.studies import ABLATE, write_study

pytestmark = pytest.mark.slow
def trial_runs(uri: str, name: str) -> list:
    tracker = tracking.Tracker(uri)
    experiment = tracker.client.get_experiment_by_name(name)
    return [] if experiment is None else tracker.runs(experiment.experiment_id)


def by_kind(runs: list, kind: str) -> list:
    return [r for r in runs if r.data.tags.get(tracking.KIND) == kind]


# --------------------------------------------------------------------------- the driver


def test_a_sigkilled_driver_resumes_and_a_second_driver_is_refused(tmp_path, ray_session, capsys):
    # one seed and two fine-tuning settings: one shared pre-training
    study = write_study(tmp_path, "resume", {"finetune.lr": [0.001, 0.002]}, seeds=(0,))
    workdir = tmp_path / "runs"
    uri = tracking.default_tracking_uri(workdir)
    lock = workdir / "locks" / "resume.lock"
    log = tmp_path / "driver.log"  # the killed driver's output, shown when an assertion fails
    # The second trial stalls in fine-tuning, so the kill lands after exactly one trial finished
    # (on a quiet machine two smoke trials sharing a pre-training finish a second apart).
    second = [t.trial_id for t in expand(parse_spec(study.read_text(), str(study)))][1]
    env = {**os.environ, faults.ENV: f"stall@synth_vqa:1/{second}"}
    with log.open("w") as sink:
        driver = subprocess.Popen([*ABLATE, "run", str(study), "--workdir", str(workdir), "--max-concurrent", "1",
                                   "--address", ray_session],
                                  stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.time() + 600  # generous: a loaded machine runs the smoke trial slowly
        while not (lock.exists() and lock.read_text().strip()):
            assert driver.poll() is None and time.time() < deadline, \
                f"the driver never took the study lock:\n{log.read_text()[-4000:]}"
            time.sleep(0.5)
        # A second `ablate run` of the same study while the first runs: refused, nothing started.
        assert main(["run", str(study), "--workdir", str(workdir)]) == 2
        err = capsys.readouterr().err
        assert f"study resume is already running in process {driver.pid}" in err and "wait for it" in err

        while sum(r.info.status == "FINISHED" for r in by_kind(trial_runs(uri, "resume"), "trial")) < 1:
            assert driver.poll() is None, f"the study ended before it could be killed:\n{log.read_text()[-4000:]}"
            assert time.time() < deadline, "no trial finished in time"
            time.sleep(1)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and anything it started
        driver.wait()

    before = trial_runs(uri, "resume")
    done_before = {r.info.run_id: r.data.tags[tracking.TRIAL_ID] for r in by_kind(before, "trial")
                   if r.info.status == "FINISHED"}
    assert len(done_before) == 1 and any(r.info.status == "RUNNING" for r in before)
    # The kernel released the dead driver's lock: the same command runs and finishes the study.
    assert main(["run", str(study), "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "1 already done, 1 to run" in out and "as KILLED" in out

    after = trial_runs(uri, "resume")
    assert not [r for r in after if r.info.status == "RUNNING"]
    left_running = [r for r in before if r.info.status == "RUNNING"]
    assert {r.info.status for r in after if r.info.run_id in {x.info.run_id for x in left_running}} == {"KILLED"}
    finished = [r for r in by_kind(after, "trial") if r.info.status == "FINISHED"]
    ids = [r.data.tags[tracking.TRIAL_ID] for r in finished]
    assert len(ids) == len(set(ids)) == 2  # exactly one FINISHED trial run per trial id
    assert set(done_before) <= {r.info.run_id for r in finished}  # the finished one kept, not re-run
    assert {r.info.status for r in by_kind(after, "study")} == {"KILLED", "FINISHED"}


# --------------------------------------------------------------------------- a trial's worker


def test_failing_workers_fail_alone_and_retry_failed_reruns_only_them(tmp_path, ray_session, capsys, monkeypatch):
    # One pre-training (lr only touches fine-tuning), five fine-tunings: one healthy, one raising,
    # one out of memory inside its training step, one whose worker process is SIGKILLed, one whose
    # loss is not finite for real (lr 1e6).
    study = write_study(tmp_path, "faulty", {"finetune.lr": [0.001, 0.002, 0.003, 0.004, 1000000.0]}, seeds=(0,))
    workdir = tmp_path / "runs"
    uri = tracking.default_tracking_uri(workdir)
    ids = {t.factors["finetune.lr"]: t.trial_id for t in expand(parse_spec(study.read_text(), str(study)))}
    ok, raising, oom, killed, nan = (ids[lr] for lr in (0.001, 0.002, 0.003, 0.004, 1000000.0))
    monkeypatch.setenv(faults.ENV, f"raise@synth_vqa:1/{raising},oom@synth_vqa:1/{oom},kill@synth_vqa:1/{killed}")

    assert main(["run", str(study), "--workdir", str(workdir), "--max-concurrent", "2"]) == 1
    out = capsys.readouterr().out
    assert "Results of faulty (1/5 finished)" in out and "4 trial(s) failed" in out
    failed_block = out.split("Failed trials:")[1]
    expected = {raising: "RuntimeError: injected failure", oom: "OutOfMemoryError: CUDA out of memory",
                killed: "worker process died", nan: "NonFiniteLossError"}
    for tid, error in expected.items():
        assert f"{tid}: " in failed_block and error in failed_block.split(f"{tid}: ")[1].splitlines()[0], tid

    first = trial_runs(uri, "faulty")
    trials = {r.data.tags[tracking.TRIAL_ID]: r for r in by_kind(first, "trial")}
    assert trials[ok].info.status == "FINISHED" and "synth_vqa/overall_acc" in trials[ok].data.metrics
    for tid, error in expected.items():
        assert trials[tid].info.status == "FAILED", tid
        assert error in trials[tid].data.tags[tracking.ERROR], (tid, trials[tid].data.tags.get(tracking.ERROR))
    assert not [r for r in first if r.info.status == "RUNNING"]  # the killed worker's runs are closed too
    assert len(by_kind(first, "pretrain")) == 1

    dashboard = (workdir / "reports" / "faulty.html").read_text()
    assert all(tid in dashboard for tid in expected) and "FAILED" in dashboard

    # --retry-failed without the injected faults: exactly the four failed trials run again.
    monkeypatch.delenv(faults.ENV)
    assert main(["run", str(study), "--workdir", str(workdir), "--retry-failed"]) == 1  # lr 1e6 diverges again
    assert "1 already done, 4 to run" in capsys.readouterr().out
    second = trial_runs(uri, "faulty")
    old = {r.info.run_id for r in first}
    new_trials = [r for r in by_kind(second, "trial") if r.info.run_id not in old]
    assert sorted(r.data.tags[tracking.TRIAL_ID] for r in new_trials) == sorted(expected)
    status = {r.data.tags[tracking.TRIAL_ID]: r.info.status for r in new_trials}
    assert status == {raising: "FINISHED", oom: "FINISHED", killed: "FINISHED", nan: "FAILED"}
    assert len(by_kind(second, "pretrain")) == 1  # the cached pre-training was reused
    finished = [r.data.tags[tracking.TRIAL_ID] for r in by_kind(second, "trial") if r.info.status == "FINISHED"]
    assert sorted(finished) == sorted({ok, raising, oom, killed})


# --------------------------------------------------------------------------- the tracking server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1: sqlite backend, proxied artifacts; stop and start again."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port, self.process = folder, port, None

    def start(self, timeout: float = 120) -> None:
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
                   "--artifacts-destination", str(self.folder / "artifacts")]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.time() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2).status == 200:
                    return
            except OSError:
                pass
            assert self.process.poll() is None and time.time() < deadline, "mlflow server did not start"
            time.sleep(0.3)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=grace)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path / "server", _free_port())
    server.folder.mkdir()
    server.start()
    yield server
    server.stop()


def test_a_tracking_server_outage_mid_trial_loses_no_metrics_and_leaks_no_password(
        tmp_path, ray_session, mlflow_server, capfd, monkeypatch):
    study = write_study(tmp_path, "outage", {}, seeds=(0,))
    # Credentials in the URI: they must be redacted wherever the URI is printed or logged.
    uri = f"http://alice:s3cr3t-pw@127.0.0.1:{mlflow_server.port}"
    # Keep the trial busy (3 s a step from pre-train step 4) so the outage falls inside it.
    monkeypatch.setenv(faults.ENV, "stall@pretrain:4")
    import threading

    outage: dict[str, float] = {}

    def break_the_server() -> None:
        deadline = time.time() + 600  # generous: a loaded machine runs the smoke trial slowly
        while time.time() < deadline:
            try:
                if by_kind(trial_runs(f"http://127.0.0.1:{mlflow_server.port}", "outage"), "pretrain"):
                    break
            except Exception:  # noqa: BLE001 - the experiment may not exist yet
                pass
            time.sleep(0.3)
        time.sleep(1.0)
        mlflow_server.stop()
        outage["down"] = time.time() * 1000
        time.sleep(6)
        mlflow_server.start()
        outage["up"] = time.time() * 1000

    breaker = threading.Thread(target=break_the_server, daemon=True)
    breaker.start()
    started = time.time()
    code = main(["run", str(study), "--workdir", str(tmp_path / "runs"), "--tracking-uri", uri])
    breaker.join(timeout=120)
    assert code == 0 and "down" in outage and "up" in outage
    assert time.time() - started < 240

    runs = trial_runs(f"http://127.0.0.1:{mlflow_server.port}", "outage")
    (trial,), (pre,), (fine,) = by_kind(runs, "trial"), by_kind(runs, "pretrain"), by_kind(runs, "finetune")
    assert {trial.info.status, pre.info.status, fine.info.status} == {"FINISHED"}
    assert pre.info.start_time < outage["down"] < outage["up"] < pre.info.end_time  # the outage fell in the stage
    client = tracking.Tracker(f"http://127.0.0.1:{mlflow_server.port}").client
    curve = client.get_metric_history(pre.info.run_id, "pretrain/mim_loss")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == list(range(1, 11))  # smoke: all 10 steps
    assert client.get_metric_history(fine.info.run_id, "synth_vqa/train_loss")
    assert "synth_vqa/overall_acc" in trial.data.metrics and "cost/flops" in trial.data.metrics

    printed = capfd.readouterr()
    assert "alice:***@127.0.0.1" in printed.out
    for run in runs:  # no password in anything printed or stored
        assert "s3cr3t" not in str(run.data.params) and "s3cr3t" not in str(run.data.tags), run.info.run_name
    assert "s3cr3t" not in printed.out + printed.err
    assert "s3cr3t" not in (tmp_path / "runs" / "reports" / "outage.html").read_text()  # the dashboard either
    ray_files = [f for f in (tmp_path / "runs" / "ray").rglob("*") if f.is_file()]
    assert ray_files and not [f for f in ray_files if b"s3cr3t" in f.read_bytes()]  # nor Tune's params.json


def test_a_server_that_stays_away_fails_the_write_with_a_clear_error_in_bounded_time():
    port = _free_port()  # nothing listens there: the server is gone
    tracker = tracking.Tracker(f"http://bob:hunter2@127.0.0.1:{port}", retry_seconds=4)
    buffer = tracking.MetricBuffer(tracker, "0" * 32)
    started = time.monotonic()
    buffer.on_step("pretrain", 1, {"mim_loss": 1.0})
    buffer.flush()  # mid-stage: one quick try, the points stay buffered
    assert len(buffer.pending) == 1 and buffer.down_since is not None
    with pytest.raises(tracking.TrackingUnavailable) as error:
        buffer.flush(final=True)
    spent = time.monotonic() - started
    message = str(error.value)
    assert "unreachable" in message and f"bob:***@127.0.0.1:{port}" in message and "log metrics" in message
    assert "hunter2" not in message
    assert spent < 4 + 2 * 35  # the bound, plus at most one HTTP attempt in flight


def test_processes_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path):
    """MLflow's client creates a new sqlite database (alembic migrations) as it is constructed;
    unguarded, two processes doing it at once fail ('table _alembic_tmp_experiments already
    exists': seen when a test polled the store while `ablate run` was creating it)."""
    uri = tracking.default_tracking_uri(tmp_path)
    code = ("import sys; from ablations.tracking import open_client; "
            "print(len(open_client(sys.argv[1]).search_experiments()))")
    procs = [subprocess.Popen([sys.executable, "-c", code, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outcomes = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for out, err, returncode in outcomes:
        assert returncode == 0, err[-2000:]
        assert out.strip() == "1"  # the Default experiment, in one fully created store
