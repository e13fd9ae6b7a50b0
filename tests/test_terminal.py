"""What a user sees: `ablate run`'s terminal output (no library noise, progress by stage), run names
and the experiment kind in the MLflow UI, and `ablate findings` on the resulting smoke store."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from fixtures.studies import ABLATE, write_study

from ablations import console, tracking
from ablations.progress import FILE, WIDTH, TrialProgress, Where, duration, estimate_left, read


def test_trial_progress_writes_stage_step_and_total_at_most_once_a_second(tmp_path):
    now = [0.0]
    progress = TrialProgress(tmp_path / FILE, clock=lambda: now[0])
    progress.on_stage_start("pretrain", 1500)
    assert read(tmp_path / FILE).text() == "pre-train 0/1500 (0%)"
    progress.on_step("pretrain", 1, {})
    assert read(tmp_path / FILE).step == 0  # within a second of the last write: not written
    now[0] = 1.5
    progress.on_step("pretrain", 300, {})
    assert read(tmp_path / FILE).text() == "pre-train 300/1500 (20%)"
    progress.on_stage_start("synth_vqa", 70)
    progress.on_eval("synth_vqa", 7, {})
    assert read(tmp_path / FILE).text() == "fine-tune synth_vqa eval 7/70 (10%)"
    assert read(tmp_path / "missing.json") is None


def test_a_stage_is_its_phase_without_the_evaluations():
    """Off a terminal a study logs a line per stage: an epoch's validation pass is not a new stage."""
    training, evaluating = Where("fine-tune synth_vqa", 40, 840), Where("fine-tune synth_vqa eval", 56, 840)
    assert training.stage == evaluating.stage == "fine-tune synth_vqa"
    assert Where("pre-train eval", 500, 1500).stage == Where("pre-train", 505, 1500).stage
    assert Where("fine-tune synth_vqa done", 840, 840).stage != training.stage


def test_time_left_and_durations():
    assert estimate_left([60.0, 120.0], remaining=4, slots=2) == 180.0  # 90 s a trial, 2 rounds of 2
    assert estimate_left([], remaining=4, slots=2) is None
    assert [duration(s) for s in (5, 95, 4000)] == ["5s", "1m35s", "1h06m"]


def test_chatty_loggers_are_quiet_unless_debugging(monkeypatch):
    monkeypatch.delenv(console.DEBUG_ENV, raising=False)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.INFO)
    console.quiet_libraries(False)
    assert logging.getLogger("mlflow.store.db.utils").level == logging.WARNING
    assert console.ray_init_options()["logging_level"] == logging.ERROR
    monkeypatch.setenv(console.DEBUG_ENV, "1")
    assert console.ray_init_options() == {}


@pytest.mark.slow
def test_ablate_run_output_names_and_findings_on_a_smoke_study(tmp_path):
    study = write_study(tmp_path, "terminal", {"model.mim.mask_ratio": [0.5, 0.75], "model.mlm.mask_ratio": [0.15]})
    spec = yaml.safe_load(study.read_text())
    spec["reference"] = {"source": "test", "ranking": [{"model.mim.mask_ratio": 0.75}, {"model.mim.mask_ratio": 0.5}]}
    study.write_text(yaml.safe_dump(spec))
    workdir = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop(console.DEBUG_ENV, None)
    done = subprocess.run([*ABLATE, "run", str(study), "--workdir", str(workdir)], capture_output=True, text=True,
                          timeout=600, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for noise in ("Creating initial MLflow database tables", "Updating database tables", "Token authentication",
                  "Started a local Ray instance", "Wrote the latest version"):
        assert noise not in out
    events = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert events and all(len(line) <= WIDTH for line in events)
    assert any("started img.5-txt.15-s0" in line for line in events)
    assert any(": pre-train " in line or ": fine-tune synth_vqa " in line for line in events)  # stage and step
    for trial in ("img.5-txt.15-s0", "img.75-txt.15-s1"):  # off a terminal: a line per stage, not per evaluation
        assert sum(f"{trial}: fine-tune synth_vqa" in line for line in events) <= 2, events
    assert "synth_vqa/overall_acc (%)" in done.stdout

    tracker = tracking.Tracker(tracking.default_tracking_uri(workdir))
    experiment = tracker.client.get_experiment_by_name("terminal")
    assert experiment.tags[tracking.EXPERIMENT_KIND] == tracking.MODEL_TRAINING  # MLflow's model-training view
    names = [r.info.run_name for r in tracker.runs(experiment.experiment_id, "tags.`ablate.kind` = 'trial'")]
    assert sorted(names) == ["img.5-txt.15-s0", "img.5-txt.15-s1", "img.75-txt.15-s0", "img.75-txt.15-s1"]
    (study_run,) = tracker.runs(experiment.experiment_id, "tags.`ablate.kind` = 'study'")
    assert f"runs/{study_run.info.run_id}/artifacts/dashboard.html" in study_run.data.tags[tracking.DESCRIPTION]
    for folder in (workdir / "trials" / "terminal").iterdir():
        assert json.loads((folder / FILE).read_text())["phase"].endswith("done")

    listing = subprocess.run([*ABLATE, "list", "--workdir", str(workdir)], capture_output=True, text=True,
                             timeout=120, env=env).stdout
    lines = listing.splitlines()
    assert lines[0].split()[:2] == ["study", "profile"] and lines[2].split()[:2] == ["terminal", "smoke"]

    findings = subprocess.run([*ABLATE, "findings", "terminal", "--workdir", str(workdir), "--out",
                               str(tmp_path / "f.md")], capture_output=True, text=True, timeout=120, env=env)
    assert findings.returncode == 0, findings.stderr
    table = [line for line in (tmp_path / "f.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0] == "| paper's finding | ours: difference (95% CI) | seeds | verdict | seeds to settle |"
    assert table[1].startswith("| img.75 beats img.5 | ")  # the run names' aliases and "| 2 / 2 |" in table[1]
    assert table[1].endswith("| not judged (smoke profile) | - |")  # smoke numbers make no verdict
    assert "profile smoke" in findings.stdout and "meaningless" in findings.stdout


def test_ablate_ui_links_each_study_in_the_model_training_view(tmp_path):
    from ablations.commands.ui import study_urls
    from dashboards.sample_store import write_sample_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_sample_study(uri, "old", {"model.mim.mask_ratio": [0.5]}, seeds=(0,), failed=0, images=False, curve_steps=1)
    experiment = tracking.open_client(uri).get_experiment_by_name("old")
    assert tracking.EXPERIMENT_KIND not in experiment.tags  # written without the tag, as by an older version
    assert study_urls(uri, "http://127.0.0.1:5000") == [
        ("old", f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning",
         None)]  # no dashboard.html logged on its study run
    tagged = tracking.open_client(uri).get_experiment_by_name("old").tags
    assert tagged[tracking.EXPERIMENT_KIND] == tracking.MODEL_TRAINING
