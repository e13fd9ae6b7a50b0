"""Reports built from a real MLflow sqlite store filled in the platform's layout, and `ablate report`."""

import argparse
import re

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from dashboards import load
from dashboards.report import build_report
from dashboards.search_report import build_search_report
from dashboards.sample_store import write_sample_study

FACTORS = {"model.mim.mask_ratio": [0.25, 0.5, 0.75], "model.mlm.mask_ratio": [0.15, 0.3]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """18 trials (6 settings x 3 seeds): the last fails, the one before is pruned."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    spec = write_sample_study(uri, "masking", FACTORS, seeds=(0, 1, 2), curve_steps=6, failed=1, pruned=1)
    return {"uri": uri, "root": root, "spec": spec}


def _figures(page: str) -> int:
    count = page.count('class="plotly-graph-div"')
    assert f"data-figures='{count}'" in page
    return count


def test_load_study_reads_the_contract(store):
    data = load.load_study("masking", store["uri"])
    assert data.factors == list(FACTORS) and data.headline == "synth_vqa/overall_acc" and data.mode == "max"
    assert data.spec == store["spec"]  # read back from the study run's spec.yaml artifact
    assert len(data.trials) == 18
    assert data.trials["state"].value_counts().to_dict() == {"FINISHED": 16, "PRUNED": 1, "FAILED": 1}
    assert set(data.trials["model.mim.mask_ratio"]) == {0.25, 0.5, 0.75}  # tags parsed back to numbers
    failed = data.trials[data.trials["state"] == "FAILED"].iloc[0]
    assert failed["error"].startswith("NonFiniteLossError")
    assert {"synth_cls/acc", "synth_vqa/open_acc"} <= set(data.metrics)
    assert sorted(data.costs) == sorted(["cost/pretrain_seconds", "cost/finetune_seconds", "cost/flops"])
    assert data.trials["pretrain_run_id"].notna().sum() == 17  # every trial that got to pre-train


def test_stage_runs_of_some_trials(store):
    data = load.load_study("masking", store["uri"])
    finished = data.trials[data.trials["state"] == "FINISHED"].head(2)
    stages = load.stage_runs(MlflowClient(store["uri"]), data.experiment_id, list(finished["run_id"]))
    assert sorted(stages["kind"].value_counts().items()) == [("finetune", 4), ("pretrain", 2)]
    assert set(stages["parent_run_id"]) == set(finished["run_id"])
    assert sorted(stages["task"].dropna()) == ["synth_cls", "synth_cls", "synth_vqa", "synth_vqa"]
    pretrain = stages[stages["kind"] == "pretrain"]
    assert set(pretrain["run_id"]) == set(finished["pretrain_run_id"])
    assert "pretrain/mim_loss" in pretrain["metric_keys"].iloc[0]


def test_report_shows_every_section(store):
    out = build_report("masking", store["uri"], store["root"] / "report.html")
    page = out.read_text()
    # 2 factors + heatmap, ours-vs-paper, pre-train + 2 fine-tune curve figures, cost, states
    assert _figures(page) == 9
    headings = re.findall(r"<h2>([^<]*)</h2>", page)
    assert headings == ["The paper&#x27;s findings, and ours", "Verdicts", "Results by factor", "Beside the paper",
                        "Are the differences real?", "Training curves", "Cost", "MIM reconstructions",
                        "Trials and failures"]  # the paper's findings first, then the study's own verdicts
    assert "Absolute values are not comparable" in page and "<th>paper&#x27;s finding</th>" in page
    assert "ranking agrees?" not in page and "<td>agrees</td>" in page
    assert page.count("<img alt=") == 3  # one reconstruction grid per image mask ratio
    assert "NonFiniteLossError: loss is nan" in page
    assert "Our best setting is the paper&#x27;s best." in page


def test_report_numbers_match_mlflow(store):
    """The table's mean for the paper's best setting is the mean of that setting's finished trial runs."""
    client = MlflowClient(store["uri"])
    experiment = client.get_experiment_by_name("masking")
    runs = client.search_runs([experiment.experiment_id],
                              "tags.`ablate.kind` = 'trial' and tags.`ablate.factor.model.mim.mask_ratio` = '0.75' "
                              "and tags.`ablate.factor.model.mlm.mask_ratio` = '0.15'")
    values = [r.data.metrics["synth_vqa/overall_acc"] for r in runs]
    assert len(values) == 3
    page = build_report("masking", store["uri"], store["root"] / "numbers.html").read_text()
    row = re.search(r"<td>mim.mask_ratio=0.75, mlm.mask_ratio=0.15</td><td>([0-9.]+)</td>", page)
    assert row and float(row.group(1)) == pytest.approx(sum(values) / 3, abs=0.05)  # "mean (%)", one decimal


def test_spec_argument_overrides_the_logged_one(store):
    spec = {k: v for k, v in store["spec"].items() if k != "reference"}
    page = build_report("masking", store["uri"], store["root"] / "noref.html", spec=spec).read_text()
    assert "has no `reference` block" in page and _figures(page) == 8


def test_unknown_study_names_the_closest(store):
    with pytest.raises(load.StudyNotFound, match="closest: masking"):
        build_report("maskin", store["uri"], store["root"] / "x.html")


def _report_args(argv, workdir):
    from ablations.commands import report

    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    args = parser.parse_args(argv)
    args.workdir = workdir
    return report, args


def test_report_command_from_name_and_study_file(store, tmp_path, capsys):
    report, args = _report_args(["masking", "--tracking-uri", store["uri"]], tmp_path)
    assert report.run(args) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'reports' / 'masking.html'}"
    study = tmp_path / "masking.yaml"
    reference = {"source": "edited", "ranking": [{"model.mim.mask_ratio": 0.25}, {"model.mim.mask_ratio": 0.75}]}
    study.write_text(yaml.safe_dump({"name": "masking", "factors": FACTORS, "reference": reference}))
    report, args = _report_args([str(study), "--tracking-uri", store["uri"], "--out", str(tmp_path / "f.html")], tmp_path)
    assert report.run(args) == 0
    page = (tmp_path / "f.html").read_text()
    assert "Paper: edited" in page and "NOT the paper&#x27;s best" in page  # the file's reference wins


def test_report_command_errors_are_usage_errors(store, tmp_path):
    from ablations.cli import UsageError

    report, args = _report_args(["masking"], tmp_path)  # no store in this work directory
    with pytest.raises(UsageError, match="no MLflow store"):
        report.run(args)
    report, args = _report_args([str(tmp_path / "missing.yaml")], tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        report.run(args)


def test_ablate_report_exit_codes(store, tmp_path):
    from ablations import cli

    assert cli.main(["report", "masking", "--tracking-uri", store["uri"], "--workdir", str(tmp_path)]) == 0
    assert cli.main(["report", "nope", "--tracking-uri", store["uri"], "--workdir", str(tmp_path)]) == 2
    assert cli.main(["report", str(tmp_path / "missing.yaml"), "--workdir", str(tmp_path)]) == 2


def _search(storage, name, directions, trial_runs):
    study = optuna.create_study(study_name=name, storage=storage, directions=directions,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_metric_names(["synth_vqa/overall_acc", "cost/pretrain_seconds"][: len(directions)])

    def objective(trial):
        ratio = trial.suggest_float("model.mim.mask_ratio", 0.1, 0.9)
        layer = trial.suggest_int("model.mim.layer", 1, 3)
        if trial.number < len(trial_runs):
            trial.set_user_attr("mlflow_run_id", trial_runs[trial.number])
        acc = 0.7 - abs(ratio - 0.75) - 0.01 * layer
        return acc if len(directions) == 1 else (acc, 30 * (1.2 - ratio))

    study.optimize(objective, n_trials=8)


@pytest.mark.parametrize("directions", [["maximize"], ["maximize", "minimize"]], ids=["single", "pareto"])
def test_search_report(store, tmp_path, directions):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    trial_runs = list(load.load_study("masking", store["uri"]).trials["run_id"][:3])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _search(storage, "masking-search-1", directions, trial_runs)
    out = build_search_report("masking", store["uri"], storage, tmp_path / "search.html",
                              optuna_study_name="masking-search-1")
    page = out.read_text()
    # per objective: history, importances, parallel coordinates, slice; plus the Pareto front for two
    optuna_figures = 4 * len(directions) + (len(directions) > 1)
    assert _figures(page) == optuna_figures  # a grid study's sections do not fit a search: left out
    experiment = load.load_study("masking", store["uri"]).experiment_id
    for run_id in trial_runs:  # trials linked to their MLflow runs, as `ablate ui` serves a sqlite store
        assert f'href="http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run_id}"' in page
    assert "8 trials (8 COMPLETE)" in page and "FINISHED" not in page  # one vocabulary for states
    assert "<h2>Results by factor</h2>" not in page and "Are the differences real?" not in page
    assert ("<h2>Best trial</h2>" if len(directions) == 1 else "<h2>Pareto front (") in page


def test_report_command_finds_the_search_study(store, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _search(storage, "masking-20261125", ["maximize"], [])
    report, args = _report_args(["masking", "--tracking-uri", store["uri"], "--storage", storage], tmp_path)
    assert report.run(args) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'reports' / 'masking.html'}"
    assert "Optuna study masking-20261125" in (tmp_path / "reports" / "masking.html").read_text()


def test_report_command_recognises_a_search_by_name(store, tmp_path):
    """A NAME with an Optuna study of that name in <workdir>/optuna.db gets the search dashboard."""
    _search(f"sqlite:///{tmp_path / 'optuna.db'}", "masking", ["maximize"], [])
    report, args = _report_args(["masking", "--tracking-uri", store["uri"]], tmp_path)
    assert report.run(args) == 0
    page = (tmp_path / "reports" / "masking.html").read_text()
    assert "<h2>Search</h2>" in page and "<h2>Best trial</h2>" in page


def test_a_study_where_everything_failed_still_reports(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_sample_study(uri, "broken", {"model.mim.mask_ratio": [0.25, 0.75]}, seeds=(0,), failed=2, images=False)
    page = build_report("broken", uri, tmp_path / "broken.html").read_text()
    assert "<h2>Trials and failures</h2>" in page and page.count("NonFiniteLossError") == 2
    assert "<h2>Results by factor</h2>" not in page and _figures(page) == 1


def test_a_reference_on_another_factor_is_explained(store):
    spec = dict(store["spec"], reference={"source": "x", "ranking": [{"model.vision.depth": 4}]})
    page = build_report("masking", store["uri"], store["root"] / "otherref.html", spec=spec).read_text()
    assert "cannot be compared" in page and "model.vision.depth" in page


def test_report_opens_with_the_verdicts_and_the_paired_differences(tmp_path):
    import json

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_sample_study(uri, "verdicts", {"model.mim.mask_ratio": [0.25, 0.75]}, seeds=(0, 1, 2), curve_steps=3)
    data = load.load_study("verdicts", uri)
    trials = data.trials
    lead, other = ({"model.mim.mask_ratio": r} for r in (0.75, 0.25))
    decisions = [{"setting": other, "against": lead, "seeds": 3, "diff": -1.0, "ci_low": -4.0, "ci_high": 2.0,
                  "verdict": "undecided"}]
    MlflowClient(uri).log_text(data.study_run_id, json.dumps(decisions), "decisions.json")
    assert load.load_study("verdicts", uri).decisions == decisions
    page = build_report("verdicts", uri, tmp_path / "report.html").read_text()
    assert page.index("<h2>Verdicts</h2>") < page.index("<h2>Results by factor</h2>")
    assert "Paired differences by seed" in page and "[-4, +2]" in page and "undecided" in page
    assert len(trials) == 6
