"""The platform end to end with the real training at the smoke profile, a real Ray
session and a real MLflow sqlite store: the run layout contract, re-runs, failures,
the shared pre-train cache, `ablate ui`. (Resume after a killed driver: test_faults.py.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ablations import tracking
from ablations.cli import main
from ablations.spec import parse_spec
from ablations.study import expand
from fixtures.studies import ABLATE, write_study
from m3ae.config import flatten

pytestmark = pytest.mark.slow
def store(workdir: Path, name: str):
    """(tracker, experiment id, runs by kind) of a study in a work directory."""
    tracker = tracking.Tracker(tracking.default_tracking_uri(workdir))
    experiment_id = tracker.client.get_experiment_by_name(name).experiment_id
    by_kind: dict[str, list] = {}
    for run in tracker.runs(experiment_id):
        by_kind.setdefault(run.data.tags.get(tracking.KIND), []).append(run)
    return tracker, experiment_id, by_kind


def artifact_paths(tracker, run_id: str, folder: str | None = None) -> set[str]:
    return {a.path for a in tracker.client.list_artifacts(run_id, folder)}


def test_a_four_trial_study_holds_the_mlflow_contract_and_reruns_nothing(tmp_path, ray_session, capsys):
    study = write_study(tmp_path, "contract", {"model.mim.mask_ratio": [0.5, 0.75]})
    workdir = tmp_path / "runs"
    assert main(["run", str(study), "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "4/4 done" in out and "Results of contract (4/4 finished)" in out and "ablate ui --workdir" in out

    tracker, experiment_id, runs = store(workdir, "contract")
    trials = {t.trial_id: t for t in expand(parse_spec(study.read_text(), str(study)))}
    (study_run,) = runs["study"]
    assert study_run.info.status == "FINISHED"
    assert {"spec.yaml"} <= artifact_paths(tracker, study_run.info.run_id)
    assert len(runs["trial"]) == 4 and len(runs["pretrain"]) == 4 and len(runs["finetune"]) == 4
    assert all(r.info.status == "FINISHED" for kind in runs.values() for r in kind)

    pretrain_ids = {r.info.run_id for r in runs["pretrain"]}
    for run in runs["trial"]:
        tags, metrics = run.data.tags, run.data.metrics
        trial = trials[tags[tracking.TRIAL_ID]]
        assert tags[tracking.PARENT_TAG] == study_run.info.run_id
        assert tags[tracking.STUDY] == "contract" and tags[tracking.SEED] == str(trial.seed)
        assert tags[tracking.PRETRAIN_KEY] == trial.pretrain_key
        assert tags["ablate.factor.model.mim.mask_ratio"] == str(trial.factors["model.mim.mask_ratio"])
        assert tags[tracking.PRETRAIN_RUN_ID] in pretrain_ids
        assert run.data.params == {k: tracking.tag_value(v) for k, v in flatten(trial.config).items()}
        for name in ("synth_vqa/overall_acc", "synth_vqa/open_acc", "synth_vqa/closed_acc",
                     "cost/pretrain_seconds", "cost/finetune_seconds", "cost/flops"):
            assert name in metrics, name
        assert metrics["cost/pretrain_seconds"] > 0 and metrics["cost/flops"] > 0
        assert "config.yaml" in artifact_paths(tracker, run.info.run_id)

    trial_run_ids = {r.info.run_id for r in runs["trial"]}
    for run in runs["pretrain"] + runs["finetune"]:
        assert run.data.tags[tracking.PARENT_TAG] in trial_run_ids
    pre = runs["pretrain"][0]
    curve = tracker.client.get_metric_history(pre.info.run_id, "pretrain/mim_loss")
    assert len(curve) == 10 and [m.step for m in curve] == sorted(m.step for m in curve)  # smoke: 10 steps
    assert any(p.endswith(".png") for p in artifact_paths(tracker, pre.info.run_id, "reconstructions"))
    fine = runs["finetune"][0]
    assert fine.data.tags[tracking.TASK] == "synth_vqa"
    assert tracker.client.get_metric_history(fine.info.run_id, "synth_vqa/train_loss")

    # Re-running the finished study runs nothing: one more study run, no new trial runs.
    assert main(["run", str(study), "--workdir", str(workdir)]) == 0
    assert "4 already done, 0 to run" in capsys.readouterr().out
    _, _, again = store(workdir, "contract")
    assert len(again["study"]) == 2 and len(again["trial"]) == 4 and len(again["pretrain"]) == 4

    assert main(["list", "--workdir", str(workdir)]) == 0
    listing = capsys.readouterr().out
    assert "contract" in listing and " 4 " in listing


def test_a_failing_trial_fails_alone_and_pretraining_is_shared(tmp_path, ray_session, capsys):
    # lr 1e6 makes fine-tuning diverge (NonFiniteLossError); lr only touches fine-tuning,
    # so the four trials need one pre-training per seed.
    study = write_study(tmp_path, "diverge", {"finetune.lr": [0.001, 1000000.0]})
    workdir = tmp_path / "runs"
    assert main(["run", str(study), "--workdir", str(workdir)]) == 1
    out = capsys.readouterr().out
    assert "Failed trials:" in out and "NonFiniteLossError" in out

    tracker, _, runs = store(workdir, "diverge")
    assert len(runs["pretrain"]) == 2  # = seeds: the cache is shared
    states = {r.data.tags["ablate.factor.finetune.lr"]: r for r in runs["trial"]}
    finished = [r for r in runs["trial"] if r.info.status == "FINISHED"]
    failed = [r for r in runs["trial"] if r.info.status == "FAILED"]
    assert len(finished) == 2 and len(failed) == 2 and len(states) == 2
    for run in finished:
        assert run.data.tags["ablate.factor.finetune.lr"] == "0.001"
        assert run.data.tags.get(tracking.PRETRAIN_RUN_ID) in {r.info.run_id for r in runs["pretrain"]}
    for run in failed:
        assert "NonFiniteLossError" in run.data.tags[tracking.ERROR]
        assert "error.txt" in artifact_paths(tracker, run.info.run_id)
    assert sorted(r.info.status for r in runs["finetune"]) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    assert (workdir / "cache" / "pretrain").is_dir() and len(list((workdir / "cache" / "pretrain").glob("*/entry.json"))) == 2

    # A failure is deterministic: a plain re-run skips it, --retry-failed runs it again.
    assert main(["run", str(study), "--workdir", str(workdir)]) == 1
    assert "4 already done, 0 to run" in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ablate_ui_answers_on_its_port(tmp_path):
    workdir = tmp_path / "runs"
    assert main(["ui", "--workdir", str(workdir)]) == 2  # no store yet: a clear error
    workdir.mkdir()
    tracking.Tracker(tracking.default_tracking_uri(workdir.absolute())).experiment("x", workdir / "artifacts")
    port = _free_port()
    ui = subprocess.Popen([*ABLATE, "ui", "--workdir", str(workdir), "--port", str(port)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert f"http://127.0.0.1:{port}" in ui.stdout.readline()
        deadline, body = time.time() + 90, None
        while body is None and time.time() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read().decode()
            except OSError:
                time.sleep(0.5)
        assert body is not None and "OK" in body
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
