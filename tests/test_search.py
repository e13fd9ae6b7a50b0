"""`ablate search`: search files are checked like studies, and searches run for real
(Optuna on sqlite, the session's Ray, MLflow on sqlite) at the smoke profile.

The searches here vary fine-tuning settings only, so every trial shares one
pre-training (the cache); the end-to-end tests share one work directory, so
synthmed is generated and the tokenizer trained once.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from ablations.cli import main
from ablations.search import distributions, load_search, parse_search
from ablations.search_runner import run_search
from ablations.search_storage import budget_used, open_storage, open_study
from ablations.search_summary import best_study_text
from ablations.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
BAD = sorted((Path(__file__).parent / "data" / "bad_searches").glob("*.yaml"))
SEARCHES = sorted((ROOT / "studies").glob("search_*.yaml"))

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage")]

LR_SEARCH = """
name: {name}
kind: search
profile: smoke
space:
  finetune.lr: {{type: float, low: 1.0e-4, high: 3.0e-3, log: true}}
  finetune.weight_decay: {{type: float, low: 0.0, high: 0.1}}
objectives: [{{metric: synth_vqa/overall_acc, direction: maximize}}]
sampler: {{name: tpe, seed: 0, n_startup_trials: 4}}
n_trials: 6
tasks: [synth_vqa]
"""

# Two learning rates that learn and two that cannot move the weights: with the median
# pruner and no warm-up, the tiny ones fall below the median at their first evaluation.
PRUNE_SEARCH = """
name: prune
kind: search
profile: smoke
base: {finetune.epochs: 3}
space:
  finetune.lr: {type: categorical, choices: [3.0e-3, 2.0e-3, 1.0e-8, 2.0e-8]}
objectives: [{metric: synth_vqa/overall_acc, direction: maximize}]
sampler: {name: random, seed: 0}
pruner: {name: median, n_startup_trials: 2, n_warmup_steps: 0}
n_trials: 4
tasks: [synth_vqa]
enqueue:
  - {finetune.lr: 3.0e-3}
  - {finetune.lr: 2.0e-3}
  - {finetune.lr: 1.0e-8}
  - {finetune.lr: 2.0e-8}
"""

PARETO_SEARCH = """
name: pareto
kind: search
profile: smoke
space:
  finetune.epochs: {type: int, low: 1, high: 3}
  finetune.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
objectives:
  - {metric: synth_vqa/overall_acc, direction: maximize}
  - {metric: cost/finetune_seconds, direction: minimize}
sampler: {name: tpe, seed: 1}
n_trials: 4
tasks: [synth_vqa]
"""


def expected_fragment(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: <message fragment>'"
    return first[len("# expect: "):]


# --------------------------------------------------------------------------- search files


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_search_is_rejected_with_a_precise_message(path):
    with pytest.raises(SpecError) as error:
        load_search(path)
    assert expected_fragment(path) in str(error.value)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("name", ["value_rejected", "unknown_key", "pruner_two_objectives"])
def test_bad_search_exits_2_and_creates_nothing(tmp_path, capsys, name):
    workdir = tmp_path / "runs"
    bad = Path(__file__).parent / "data" / "bad_searches" / f"{name}.yaml"
    assert main(["search", str(bad), "--workdir", str(workdir)]) == 2
    assert expected_fragment(bad) in capsys.readouterr().err
    assert not workdir.exists()  # no optuna.db, no mlflow.db, no cache


@pytest.mark.parametrize("path", SEARCHES, ids=[p.stem for p in SEARCHES])
@pytest.mark.parametrize("profile", [None, "smoke"])
def test_shipped_searches_are_valid(path, profile):
    spec = load_search(path, profile)
    assert spec.n_trials >= 8 and spec.space
    if len(spec.objectives) > 1:
        assert spec.pruner.name == "none"


def test_profile_and_data_root_replace_the_files_own(tmp_path):
    spec = load_search(SEARCHES[0], "paper", str(tmp_path))
    assert (spec.profile, spec.data.root) == ("paper", str(tmp_path))
    assert spec.config(spec.enqueue[0] if spec.enqueue else {}, 0).data.root == str(tmp_path)


def test_validate_checks_search_files(capsys):
    assert main(["validate", str(ROOT / "studies" / "search_masking.yaml")]) == 0
    assert "ok - search 'search_masking', 4 dimensions, 12 trials" in capsys.readouterr().out
    assert main(["validate", str(BAD[0])]) == 2


def test_the_same_search_keeps_its_fingerprint_and_a_changed_one_does_not():
    text = LR_SEARCH.format(name="x")
    same = parse_search(text + "timeout: 60\n")  # run limits do not change what a trial means
    other = parse_search(text.replace("high: 0.1", "high: 0.2"))
    assert parse_search(text).fingerprint() == same.fingerprint() != other.fingerprint()


def test_a_wide_pareto_front_with_copies_is_written_as_a_valid_study():
    """Front trials answered as copies of a twin appear once; a front wider than the
    study guard (max_trials) still gives a study that `ablate run` accepts."""
    spec = parse_search(PARETO_SEARCH)
    study = optuna.create_study(directions=spec.directions)
    space = distributions(spec)
    for i in range(30):  # every point is on the front: more accurate and more expensive
        params = {"finetune.epochs": 1 + i % 3, "finetune.lr": 1e-4 * (1 + i)}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space, values=[i, i]))
    copy = {"finetune.epochs": 1, "finetune.lr": 1e-4}
    study.add_trial(optuna.trial.create_trial(params=copy, distributions=space, values=[0, 0]))

    text = best_study_text(spec, study)
    best = parse_spec(text, "best_study.yaml")
    assert len(study.best_trials) == 31 and len(best.combinations()) == 30
    assert best.num_trials() == 30 * 3 <= best.max_trials
    assert best.combinations()[0] == copy and yaml.safe_load(text)["factors"]["zip"]


# --------------------------------------------------------------------------- running searches


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("search")


def write(workdir: Path, text: str, name: str) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(text)
    return path


def load(workdir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 'optuna.db'}")


def mlflow_runs(workdir: Path, name: str) -> list:
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id], max_results=1000)


def of_kind(runs, kind: str) -> list:
    return [r for r in runs if r.data.tags.get("ablate.kind") == kind]


def test_a_search_runs_then_resumes_to_the_new_total(ray_session, workdir, capsys):
    path = write(workdir, LR_SEARCH.format(name="lr"), "lr")
    args = ["search", str(path), "--workdir", str(workdir), "--max-concurrent", "2"]

    assert main(args) == 0
    out = capsys.readouterr().out
    study = load(workdir, "lr")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert f"optuna-dashboard sqlite:///{workdir / 'optuna.db'}" in out
    assert "Best trial:" in out

    runs = mlflow_runs(workdir, "lr")
    (study_run,) = of_kind(runs, "study")
    trials = of_kind(runs, "trial")
    assert sorted(int(r.data.tags["ablate.optuna_trial"]) for r in trials) == list(range(6))
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {study_run.info.run_id}
    assert {r.info.status for r in trials} == {"FINISHED"}
    assert len(of_kind(runs, "pretrain")) <= 1  # fine-tuning settings only: one shared pre-training
    best = study.best_trial
    best_run = next(r for r in trials if r.data.tags["ablate.optuna_trial"] == str(best.number))
    assert best_run.data.metrics["synth_vqa/overall_acc"] == pytest.approx(best.value)
    assert float(best_run.data.params["finetune.lr"]) == pytest.approx(best.params["finetune.lr"])

    # the best trial as a study: valid for `ablate run`, more seeds, the best values
    best_study = workdir / "searches" / "lr" / "best_study.yaml"
    spec = load_spec(best_study)
    assert spec.seeds == [0, 1, 2]
    assert spec.factors["finetune.lr"] == [best.params["finetune.lr"]]
    assert main(["run", str(best_study), "--workdir", str(workdir), "--dry-run"]) == 0
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    artifacts = {a.path for a in client.list_artifacts(study_run.info.run_id)}
    assert {"dashboard.html", "best_study.yaml", "spec.yaml", "study.yaml"} <= artifacts

    # the same command with a higher total adds exactly the difference
    assert main(args + ["--n-trials", "8"]) == 0
    assert "6 of 8 trials already in the study, 2 to go" in capsys.readouterr().out
    study = load(workdir, "lr")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 8
    runs = mlflow_runs(workdir, "lr")
    second = max(of_kind(runs, "study"), key=lambda r: r.info.start_time)
    new = [r for r in of_kind(runs, "trial") if r.data.tags["mlflow.parentRunId"] == second.info.run_id]
    assert sorted(int(r.data.tags["ablate.optuna_trial"]) for r in new) == [6, 7]
    assert len(of_kind(runs, "trial")) == 8


def test_a_search_of_the_same_name_but_another_space_is_refused(ray_session, workdir, capsys):
    path = write(workdir, LR_SEARCH.format(name="lr").replace("high: 0.1", "high: 0.3"), "lr_changed")
    before = len(load(workdir, "lr").trials)
    assert main(["search", str(path), "--workdir", str(workdir)]) == 2
    assert "already holds an Optuna study named 'lr' from a different search" in capsys.readouterr().err
    assert len(load(workdir, "lr").trials) == before


def test_weak_trials_are_pruned_in_optuna_and_mlflow(ray_session, workdir):
    path = write(workdir, PRUNE_SEARCH, "prune")
    assert main(["search", str(path), "--workdir", str(workdir), "--max-concurrent", "1"]) == 0
    study = load(workdir, "prune")
    states = {t.params["finetune.lr"]: t.state for t in study.trials}
    assert states == {3e-3: TrialState.COMPLETE, 2e-3: TrialState.COMPLETE,
                      1e-8: TrialState.PRUNED, 2e-8: TrialState.PRUNED}
    for t in study.trials:
        if t.state == TrialState.PRUNED:  # stopped at its first evaluation, not run to the end
            assert len(t.intermediate_values) < 3

    trials = {int(r.data.tags["ablate.optuna_trial"]): r for r in of_kind(mlflow_runs(workdir, "prune"), "trial")}
    for t in study.trials:
        run = trials[t.number]
        if t.state == TrialState.PRUNED:
            assert (run.info.status, run.data.tags.get("ablate.pruned")) == ("KILLED", "true")
            assert "synth_vqa/overall_acc" not in run.data.metrics
        else:
            assert run.info.status == "FINISHED" and "ablate.pruned" not in run.data.tags


def test_two_objectives_report_a_pareto_front(ray_session, workdir, capsys):
    path = write(workdir, PARETO_SEARCH, "pareto")
    assert main(["search", str(path), "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    study = load(workdir, "pareto")
    assert len(study.trials) == 4
    front = study.best_trials
    assert f"Pareto front ({len(front)} trials):" in out

    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    for t in front:  # nothing dominates a front trial
        assert not any(o.values[0] >= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values
                       for o in done)
    spec = load_spec(workdir / "searches" / "pareto" / "best_study.yaml")
    settings = [(c["finetune.epochs"], c["finetune.lr"]) for c in spec.combinations()]
    assert sorted(settings) == sorted((t.params["finetune.epochs"], t.params["finetune.lr"]) for t in front)


def test_a_trial_whose_driver_died_is_failed_by_heartbeat_and_retried(ray_session, workdir):
    text = LR_SEARCH.format(name="heartbeat").replace("n_trials: 6", "n_trials: 1")
    spec = parse_search(text)
    storage_url = f"sqlite:///{workdir / 'optuna.db'}"
    # a driver that asked for a trial, beat once, and died
    study = open_study(spec, open_storage(storage_url, heartbeat_seconds=1), storage_url)
    dead = study.ask(distributions(spec))
    study._storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)  # older than the grace period (2 beats)

    run_search(spec, text, workdir=workdir, storage_url=storage_url,
               tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", heartbeat_seconds=1)
    trials = load(workdir, "heartbeat").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].params == trials[0].params  # the retry re-runs the dead trial's parameters
    assert trials[1].system_attrs["failed_trial"] == 0
    assert budget_used(trials) == 1


def test_optuna_dashboard_opens_the_storage_as_it_is(workdir):
    """The command `ablate search` prints: optuna-dashboard on the search's storage lists its study."""
    if not (workdir / "optuna.db").exists():
        pytest.skip("needs the storage of test_a_search_runs_then_resumes_to_the_new_total")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).parent / "optuna-dashboard"), f"sqlite:///{workdir / 'optuna.db'}",
               "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, studies = time.monotonic() + 60, None
        while time.monotonic() < deadline and studies is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    studies = json.load(response)["study_summaries"]
            except OSError:
                time.sleep(0.5)
        assert studies is not None, "optuna-dashboard did not answer within 60 s"
        assert "lr" in {s["study_name"] for s in studies}
    finally:
        server.terminate()
        server.wait(timeout=10)
