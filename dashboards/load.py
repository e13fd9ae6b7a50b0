"""Read a study out of MLflow into tidy pandas frames (the MLflow contract in docs/architecture.md).

`load_study` does one run search per run kind (in mlflow.search_runs' columns) and reshapes the result:
- `trials`: one row per trial (latest run per trial id): run_id, trial_id, seed, state, error,
  pretrain_run_id, one column per factor (dotted path, values parsed back to numbers), one column
  per final metric (`synth_vqa/overall_acc`, `cost/pretrain_seconds`, ...).
Stage runs (pre-train, fine-tune), step curves and images are fetched on demand, for the few
trials a figure draws (`stage_runs`, `metric_histories`, `latest_reconstruction`): they cost a
request per run, and a 1,000-trial study has 3,000 stage runs.
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from ablate_common.store import open_client
from dashboards.summaries import (drawn_trials, format_setting, is_curve, over_steps, parse_value, pretrain_runs,
                                  setting_labels, short_name)

FACTOR_TAG = "tags.ablate.factor."
COST_PREFIX = "cost/"
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
SEARCH_PAGE = 10_000  # the sqlite store serves at most 50,000 runs a page
CURVES_PER_LEVEL = 3  # runs drawn per colour in a curve figure: enough to see seed spread
MAX_CURVE_RUNS = 24  # curves cost one MLflow request per run and key: cap them for big studies
MAX_PICTURES = 12
MASK_RATIO = "model.mim.mask_ratio"
TRIAL_COLUMNS = ["run_id", "trial_id", "seed", "state", "error", "pretrain_run_id", "optuna_trial", "start_time"]


class StudyNotFound(LookupError):
    """No MLflow experiment of that name; the message lists the closest names."""


@dataclass(frozen=True)
class StudyData:
    """Everything the dashboard draws, read once from MLflow."""

    name: str
    tracking_uri: str
    experiment_id: str
    study_run_id: str | None
    spec: dict
    trials: pd.DataFrame
    factors: list[str]
    metrics: list[str]  # task metrics, headline first
    costs: list[str] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)  # decisions.json of the newest study run with one

    @property
    def headline(self) -> str | None:
        return self.metrics[0] if self.metrics else None

    @property
    def mode(self) -> str:
        return headline_metric(self.spec)[1]


def headline_metric(spec: dict) -> tuple[str | None, str]:
    """(metric name, "max" | "min") from a study's `metric` or a search's first `objectives` entry."""
    metric = spec.get("metric")
    if isinstance(metric, dict) and metric.get("name"):
        return str(metric["name"]), str(metric.get("mode", "max"))
    objectives = spec.get("objectives") or []
    if objectives and isinstance(objectives[0], dict) and objectives[0].get("metric"):
        direction = str(objectives[0].get("direction", "maximize"))
        return str(objectives[0]["metric"]), "min" if direction.startswith("min") else "max"
    return None, "max"


def find_experiment(client: MlflowClient, name: str):
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment
    names = [e.name for e in client.search_experiments()]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; closest: {', '.join(close)}" if close else f"; studies in this store: {', '.join(names) or 'none'}"
    raise StudyNotFound(f"no study named {name!r} in {client.tracking_uri}{hint}")


def search_kind(client: MlflowClient, experiment_id: str, kind: str) -> pd.DataFrame:
    """All runs of one `ablate.kind`, in the columns mlflow.search_runs uses."""
    return search(client, experiment_id, f"tags.`ablate.kind` = '{kind}'")


def search(client: MlflowClient, experiment_id: str, filter_string: str) -> pd.DataFrame:
    """Runs matching a filter in the columns mlflow.search_runs uses (run_id, status, start_time,
    params.*, metrics.* as last values, tags.*).

    Paged through MlflowClient rather than mlflow.search_runs: the fluent call reads only the
    process-wide tracking URI, and setting that rewrites MLFLOW_TRACKING_URI for the whole process.
    """
    rows, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=SEARCH_PAGE,
                                  page_token=token)
        for run in page:
            row = {"run_id": run.info.run_id, "status": run.info.status,
                   "start_time": run.info.start_time, "end_time": run.info.end_time}
            row.update({f"params.{k}": v for k, v in run.data.params.items()})
            row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
            row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
            rows.append(row)
        token = page.token
        if not token:
            break
    runs = pd.DataFrame(rows)
    for column in ("start_time", "end_time"):
        if column in runs:
            runs[column] = pd.to_datetime(runs[column], unit="ms", utc=True)
    return runs


def load_study(name: str, uri: str, spec: dict | None = None) -> StudyData:
    """Read the study `name` (an MLflow experiment) from the store at `uri`."""
    client = open_client(uri)
    experiment = find_experiment(client, name)
    study_runs = search_kind(client, experiment.experiment_id, "study")
    trial_runs = search_kind(client, experiment.experiment_id, "trial")
    study_run_id = _latest(study_runs)
    if spec is None:
        spec = read_spec(client, study_runs)
    trials = tidy_trials(trial_runs)
    factors = factor_columns(trials, spec)
    for group in zip_groups(spec):
        trials, factors = join_zipped(trials, factors, group)
    metrics = task_metrics(trials, spec)
    costs = [c for c in trials.columns if c.startswith(COST_PREFIX)]
    return StudyData(name, uri, experiment.experiment_id, study_run_id, spec, trials, factors, metrics, costs,
                     read_decisions(client, study_runs))


def _latest(runs: pd.DataFrame) -> str | None:
    if runs.empty:
        return None
    return str(runs.sort_values("start_time").iloc[-1]["run_id"])


def read_spec(client: MlflowClient, study_runs: pd.DataFrame) -> dict:
    """The study file logged as `spec.yaml` on the newest study run that has one ({} if none)."""
    for run_id in study_runs.sort_values("start_time", ascending=False)["run_id"] if not study_runs.empty else []:
        names = {a.path for a in client.list_artifacts(run_id)}
        if "spec.yaml" not in names:
            continue
        return yaml.safe_load(download(client, run_id, "spec.yaml").decode("utf-8")) or {}
    return {}


def read_decisions(client: MlflowClient, study_runs: pd.DataFrame) -> list[dict]:
    """The verdicts `ablate run` logged as `decisions.json` on the newest study run that has them."""
    for run_id in study_runs.sort_values("start_time", ascending=False)["run_id"] if not study_runs.empty else []:
        if "decisions.json" in {a.path for a in client.list_artifacts(run_id)}:
            return json.loads(download(client, run_id, "decisions.json").decode("utf-8"))
    return []


def tidy_trials(runs: pd.DataFrame) -> pd.DataFrame:
    """search_runs rows of trial runs -> one row per trial id (its newest finished run, else newest run)."""
    if runs.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    out = pd.DataFrame({
        "run_id": runs["run_id"],
        "trial_id": _column(runs, "tags.ablate.trial_id").fillna(runs["run_id"]),
        "seed": _column(runs, "tags.ablate.seed").map(parse_value),
        "state": runs["status"].where(_column(runs, "tags.ablate.pruned").str.lower().ne("true"), "PRUNED"),
        "error": _column(runs, "tags.ablate.error").fillna(""),
        "pretrain_run_id": _column(runs, "tags.ablate.pretrain_run_id"),
        "optuna_trial": _column(runs, "tags.ablate.optuna_trial").map(parse_value),
        "start_time": runs["start_time"],
    })
    for column in runs.columns:
        if column.startswith(FACTOR_TAG):
            out[column[len(FACTOR_TAG):]] = runs[column].map(parse_value)
        elif column.startswith("metrics.") and "/" in column:
            out[column[len("metrics."):]] = pd.to_numeric(runs[column], errors="coerce")
    out = out.assign(_finished=out["state"].eq("FINISHED"))
    out = out.sort_values(["_finished", "start_time"]).drop_duplicates("trial_id", keep="last")
    return out.drop(columns="_finished").sort_values("start_time").reset_index(drop=True)


def stage_runs(client: MlflowClient, experiment_id: str, trial_run_ids: Sequence[str]) -> pd.DataFrame:
    """The pre-train and fine-tune runs under some trial runs (one query per trial: MLflow's filter
    has no IN for tags) -> tidy_stages frame."""
    found = [search(client, experiment_id, f"tags.`mlflow.parentRunId` = '{run_id}'") for run_id in trial_run_ids]
    found = [f for f in found if not f.empty]
    return tidy_stages(pd.concat(found, ignore_index=True) if found else pd.DataFrame())


def tidy_stages(runs: pd.DataFrame) -> pd.DataFrame:
    """Pre-train / fine-tune runs -> [run_id, kind, parent_run_id, task, state, metric_keys]."""
    columns = ["run_id", "kind", "parent_run_id", "task", "state", "metric_keys"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    metric_keys = [c[len("metrics."):] for c in runs.columns if c.startswith("metrics.")]

    def task_of(row: pd.Series) -> str | None:
        tagged = row.get("tags.ablate.task")
        if isinstance(tagged, str) and tagged:
            return tagged
        if row.get("tags.ablate.kind") != "finetune":
            return None
        # `<task>/train_loss` names the task of a fine-tune run
        logged = [k.split("/")[0] for k in metric_keys if pd.notna(row.get(f"metrics.{k}")) and "/" in k]
        return logged[0] if logged else None

    return pd.DataFrame({
        "run_id": runs["run_id"],
        "kind": _column(runs, "tags.ablate.kind"),
        "parent_run_id": _column(runs, "tags.mlflow.parentRunId"),
        "task": runs.apply(task_of, axis=1),
        "state": runs["status"],
        "metric_keys": runs.apply(lambda row: [k for k in metric_keys if pd.notna(row.get(f"metrics.{k}"))], axis=1),
    }, columns=columns)


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    if name in runs:
        return runs[name].astype("object").where(runs[name].notna(), None)
    return pd.Series([None] * len(runs), index=runs.index, dtype="object")


def factor_columns(trials: pd.DataFrame, spec: dict) -> list[str]:
    """Factor paths in the study file's order, then any other `ablate.factor.*` tags."""
    tagged = [c for c in trials.columns if c not in TRIAL_COLUMNS and "/" not in c]
    declared = spec.get("factors") or spec.get("space") or {}
    declared = list(declared) if isinstance(declared, dict) else [
        f.get("path") if isinstance(f, dict) else str(f) for f in declared]
    return [c for c in declared if c in tagged] + [c for c in tagged if c not in declared]


def zip_groups(spec: dict) -> list[list[str]]:
    """The paths of each `zip` group of the study's factors (paths varied together)."""
    factors = spec.get("factors")
    groups = factors.get("zip") if isinstance(factors, dict) else None
    return [list(g) for g in groups or [] if isinstance(g, dict)]


def join_zipped(trials: pd.DataFrame, factors: list[str], group: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Paths varied together are one factor: a column "zip: a, b" with labels "a=1, b=true".
    The single paths stay in `trials` (reference settings name them) but leave the factor list."""
    paths = [p for p in group if p in factors]
    if len(paths) < 2 or trials.empty:
        return trials, factors
    name = "zip: " + ", ".join(short_name(p) for p in paths)
    trials = trials.assign(**{name: trials[paths].apply(lambda r: format_setting(r.to_dict()), axis=1)})
    return trials, [f for f in factors if f not in paths] + [name]


def task_metrics(trials: pd.DataFrame, spec: dict) -> list[str]:
    """Final `<task>/<metric>` columns, the study's headline metric first."""
    names = [c for c in trials.columns if "/" in c and not c.startswith(COST_PREFIX)]
    headline = headline_metric(spec)[0]
    if headline in names:
        names.remove(headline)
        names.insert(0, headline)
    return names


def metric_histories(client: MlflowClient, run_ids: Sequence[str], keys: Sequence[str]) -> pd.DataFrame:
    """Step curves -> [run_id, key, step, value] (one get_metric_history request per run and key)."""
    rows = []
    for run_id in run_ids:
        for key in keys:
            for m in client.get_metric_history(run_id, key):
                rows.append((run_id, key, m.step, m.value))
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


def run_metric_keys(client: MlflowClient, run_id: str) -> list[str]:
    return sorted(client.get_run(run_id).data.metrics)


def latest_reconstruction(client: MlflowClient, run_id: str) -> tuple[int, bytes] | None:
    """The PNG `reconstructions/step_<N>.png` with the largest N on a pre-train run: (N, bytes)."""
    steps = []
    for info in client.list_artifacts(run_id, "reconstructions"):
        stem = Path(info.path).stem
        if not info.is_dir and info.path.endswith(".png") and stem.startswith("step_") and stem[5:].isdigit():
            steps.append((int(stem[5:]), info.path))
    if not steps:
        return None
    step, path = max(steps)
    return step, download(client, run_id, path)


def download(client: MlflowClient, run_id: str, path: str) -> bytes:
    """One artifact's bytes, without MLflow's progress bar on stderr."""
    previous = os.environ.get(PROGRESS_BAR)
    os.environ[PROGRESS_BAR] = "false"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return Path(client.download_artifacts(run_id, path, dst_path=tmp)).read_bytes()
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = previous


# --------------------------------------------------------------------------- what the figures draw, on demand


@dataclass(frozen=True)
class Curves:
    """One figure's step curves."""

    title: str  # "Pre-training", "Fine-tuning: <task>"
    history: pd.DataFrame  # [run_id, key, step, value, label]: label is the run's setting
    keys: list[str]  # the keys logged at several steps


@dataclass(frozen=True)
class TrainingCurves:
    figures: list[Curves]
    drawn_settings: int  # settings with a run drawn
    settings: int  # settings in the study


@dataclass(frozen=True)
class Picture:
    """The latest reconstruction grid of one setting's pre-training."""

    label: str
    step: int
    png: bytes


@dataclass(frozen=True)
class RunDetails:
    """What the dashboard draws from the stage runs (curves, pictures); None when no trial has started."""

    curves: TrainingCurves | None
    pictures: list[Picture] | None


def run_details(data: StudyData) -> RunDetails:
    """Step curves of up to CURVES_PER_LEVEL runs per setting and one reconstruction per setting."""
    if data.trials.empty:
        return RunDetails(None, None)
    client = open_client(data.tracking_uri)
    return RunDetails(training_curves(client, data), reconstructions(client, data))


def training_curves(client: MlflowClient, data: StudyData) -> TrainingCurves:
    drawn = drawn_trials(data.trials, data.factors, CURVES_PER_LEVEL, MAX_CURVE_RUNS)
    settings = setting_labels(data.trials, data.factors).nunique()
    stages = stage_runs(client, data.experiment_id, list(drawn["run_id"]))
    found = []
    pretrain = drawn.assign(pretrain=pretrain_runs(drawn, stages)).dropna(subset=["pretrain"])
    pretrain = pretrain.drop_duplicates("pretrain")  # trials that differ only in fine-tuning share one
    if len(pretrain):
        pretrain = pretrain.assign(label=setting_labels(pretrain, data.factors))
        keys = sorted({k for run_id in pretrain["pretrain"] for k in _metric_keys(client, stages, run_id)
                       if k.startswith("pretrain/") and is_curve(k)})
        history = metric_histories(client, list(pretrain["pretrain"]), keys)
        keys = over_steps(history, keys)
        if keys:
            history = history.merge(pretrain[["pretrain", "label"]], left_on="run_id", right_on="pretrain")
            found.append(Curves("Pre-training", history, keys))
    finetune = stages[(stages["kind"] == "finetune") & stages["task"].notna()]
    finetune = finetune.merge(drawn[["run_id", "label"]], left_on="parent_run_id", right_on="run_id",
                              suffixes=("", "_trial"))
    for task, runs in finetune.groupby("task", sort=True):
        keys = sorted({k for ks in runs["metric_keys"] for k in ks if k.startswith(f"{task}/") and is_curve(k)})
        history = metric_histories(client, list(runs["run_id"]), keys)
        keys = over_steps(history, keys)
        if keys:
            found.append(Curves(f"Fine-tuning: {task}", history.merge(runs[["run_id", "label"]], on="run_id"), keys))
    return TrainingCurves(found, drawn["label"].nunique(), settings)


def _metric_keys(client: MlflowClient, stages: pd.DataFrame, run_id: str) -> list[str]:
    known = stages.loc[stages["run_id"] == run_id, "metric_keys"]
    return list(known.iloc[0]) if len(known) else run_metric_keys(client, run_id)


def reconstructions(client: MlflowClient, data: StudyData) -> list[Picture]:
    """One picture per image mask ratio when that is a factor, else one per setting (at most MAX_PICTURES)."""
    by = [MASK_RATIO] if MASK_RATIO in data.factors else data.factors
    trials = data.trials.sort_values("state", key=lambda s: s != "FINISHED", kind="stable")  # finished first
    drawn = drawn_trials(trials, by, 1, MAX_PICTURES)
    links = drawn["pretrain_run_id"]
    if links.isna().any():
        stages = stage_runs(client, data.experiment_id, list(drawn.loc[links.isna(), "run_id"]))
        links = pretrain_runs(drawn, stages)
    pictures = []
    for label, run_id in zip(drawn["label"], links):
        found = latest_reconstruction(client, run_id) if isinstance(run_id, str) else None
        if found:
            pictures.append(Picture(label, *found))
    return pictures
