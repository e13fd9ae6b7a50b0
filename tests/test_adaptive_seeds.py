"""Adaptive seeds end to end on the real Ray and MLflow (smoke profile): a pilot round under
--budget 0, the race continued by a re-run, decisions.json, and a last re-run that adds nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ablations import tracking
from ablations.cli import main
from fixtures.studies import write_study

pytestmark = pytest.mark.slow

SEEDS = {"start": 2, "max": 3, "min_effect": 0.001}
# Smoke accuracies come from 20 test questions and often tie (paired differences all 0: decided at
# once); pre-training seconds are continuous noise, so two seeds decide nothing and the race goes on.
METRIC = {"name": "cost/pretrain_seconds", "mode": "min"}


def trial_runs(workdir, name):
    tracker = tracking.Tracker(tracking.default_tracking_uri(workdir))
    experiment_id = tracker.client.get_experiment_by_name(name).experiment_id
    return tracker, experiment_id, tracking.latest_trial_runs(tracker, experiment_id)


def seeds_per_setting(runs) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for run in runs.values():
        found.setdefault(run.data.tags["ablate.factor.model.mim.mask_ratio"], []).append(int(run.data.tags[tracking.SEED]))
    return {k: sorted(v) for k, v in found.items()}


def test_adaptive_seeds_race_resumes_and_decides(tmp_path, ray_session, capsys):
    study = write_study(tmp_path, "race", {"model.mim.mask_ratio": [0.5, 0.75]}, SEEDS, METRIC)
    workdir = tmp_path / "runs"

    # --budget 0: the first round only (a pilot), then the race stops
    assert main(["run", str(study), "--workdir", str(workdir), "--budget", "0"]) == 0
    out = capsys.readouterr().out
    assert "the race stopped: the next round would not fit --budget" in out
    _, _, runs = trial_runs(workdir, "race")
    assert seeds_per_setting(runs) == {"0.5": [0, 1], "0.75": [0, 1]}

    # a re-run continues the race where it stopped: one more seed for the leader and the undecided one
    assert main(["run", str(study), "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "4 trials already done" in out
    tracker, experiment_id, runs = trial_runs(workdir, "race")
    per_setting = seeds_per_setting(runs)
    assert all(SEEDS["start"] <= len(s) <= SEEDS["max"] for s in per_setting.values())
    assert per_setting == {"0.5": [0, 1, 2], "0.75": [0, 1, 2]}  # undecided at 2 seeds: both get a third
    assert all(r.info.status == "FINISHED" for r in runs.values())
    assert "Verdicts on cost/pretrain_seconds" in out and "vs leader" in out

    studies = sorted(tracker.runs(experiment_id, f"tags.`{tracking.KIND}` = 'study'"), key=lambda r: r.info.start_time)
    text = tracker.client.download_artifacts(studies[-1].info.run_id, "decisions.json", str(tmp_path))
    (decision,) = json.loads(Path(text).read_text())
    assert set(decision) == {"setting", "against", "seeds", "diff", "ci_low", "ci_high", "verdict"}
    assert decision["seeds"] == 3 and decision["verdict"] in ("better", "worse", "equivalent", "undecided")
    assert {decision["setting"]["model.mim.mask_ratio"], decision["against"]["model.mim.mask_ratio"]} == {0.5, 0.75}

    # the race is over: a re-run adds nothing
    assert main(["run", str(study), "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "6 trials already done, nothing to run" in out
    _, _, again = trial_runs(workdir, "race")
    assert len(again) == 6 and {r.info.run_id for r in again.values()} == {r.info.run_id for r in runs.values()}


def test_budget_needs_adaptive_seeds(tmp_path, capsys):
    study = write_study(tmp_path, "fixed", {"model.mim.mask_ratio": [0.5, 0.75]})
    assert main(["run", str(study), "--workdir", str(tmp_path / "w"), "--budget", "10"]) == 2
    assert "--budget needs adaptive seeds" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
