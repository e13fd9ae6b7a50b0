"""Build the dashboard of an Optuna search: what a continuous search needs (history, importances,
parallel coordinates, slices, the Pareto front) and its trials, each linked to its MLflow run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ablate_common.naming import format_value
from ablate_common.redact import redact_uri
from dashboards import html, load, summaries
from dashboards.load import StudyData
from dashboards.report import SMOKE_WARNING

# Where `ablate ui` serves a sqlite store's runs (its default host and port): run links point there.
LOCAL_UI = "http://127.0.0.1:5000"


def build_search_report(study_name: str, tracking_uri: str, storage_url: str, out: Path,
                        optuna_study_name: str | None = None) -> Path:
    """The dashboard of an Optuna search: what a continuous search needs (history, importances,
    parallel coordinates, slices, the Pareto front) and its best trials, each linked to its MLflow
    run. A grid study's sections (per-level tests, heatmaps) do not fit sampled settings: left out."""
    import optuna

    study = optuna.load_study(study_name=optuna_study_name or study_name, storage=storage_url)
    try:
        data = load.load_study(study_name, tracking_uri)
    except load.StudyNotFound:
        data = None
    profile = f"profile {data.spec.get('profile', '?')} · " if data else ""
    page = html.Page(f"Search {study_name}", f"{profile}Optuna study {study.study_name} in {redact_uri(storage_url)}"
                     + (f" · MLflow {redact_uri(tracking_uri)}" if data else " · no MLflow runs found"))
    if data is not None and data.spec.get("profile") == "smoke":
        page.notice = SMOKE_WARNING
    _search_sections(page, study, data)
    return html.write(page, out)


def _search_sections(page: html.Page, study, data: StudyData | None) -> None:
    import optuna
    from optuna import visualization as vis

    complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    labels = [summaries.metric_label(n) for n in names]
    counts = pd.Series([t.state.name for t in study.trials]).value_counts()
    states = ", ".join(f"{n} {s}" for s, n in counts.items())
    section = page.section("Search", f"{len(study.trials)} trials ({states}); objectives: "
                           + ", ".join(f"{label}, {d.name.lower()}d" for label, d in zip(labels, study.directions))
                           + ". Trial states are Optuna's: COMPLETE, PRUNED (stopped early), FAIL, RUNNING.")
    if not complete:
        section.blocks.append(html.paragraph("No trial has completed yet: nothing to plot."))
    else:
        if len(names) > 1:
            page.figure(section, vis.plot_pareto_front(study, target_names=labels))
        for i, label in enumerate(labels):
            target = None if len(names) == 1 else (lambda t, i=i: t.values[i])
            page.figure(section, _titled(vis.plot_optimization_history(study, target=target, target_name=label), label))
            try:
                # fANOVA: direction-agnostic (PED-ANOVA, the default, ranks for *low* targets) and seeded
                evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
                fig = vis.plot_param_importances(study, evaluator=evaluator, target=target, target_name=label)
                page.figure(section, _titled(fig, label))
            except (RuntimeError, ValueError) as error:  # fewer than 2 trials, or no parameter varies
                section.blocks.append(html.paragraph(f"Parameter importances for {label}: not available ({error})."))
            page.figure(section, _titled(vis.plot_parallel_coordinate(study, target=target, target_name=label), label))
            page.figure(section, _titled(vis.plot_slice(study, target=target, target_name=label), label))
    table = _search_trials_table(study, names, data)
    best = {t.number for t in _best_trials(study)}
    if best:
        title = "Best trial" if len(names) == 1 else f"Pareto front ({len(best)} trials)"
        shown = table[table["trial"].isin(best)]
        page.section(title, _link_note(data)).blocks.append(html.table_html(shown, ["best"] * len(shown)))
    page.section("Every trial").blocks.append(
        html.table_html(table, ["flag" if s == "FAIL" else "" for s in table["state"]]))


def _best_trials(study) -> list:
    import optuna

    if not study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]):
        return []
    return [study.best_trial] if len(study.directions) == 1 else list(study.best_trials)


def _link_note(data: StudyData | None) -> str:
    if data is None:
        return "No MLflow runs found for this search."
    if data.tracking_uri.startswith(("http://", "https://")):
        return "Each trial links to its run on the MLflow server."
    return f"Each trial links to its MLflow run as `ablate ui` serves it ({LOCAL_UI}; start it first)."


def _titled(fig, objective: str):
    """Optuna's titles are generic ("Slice Plot"): name the objective."""
    return fig.update_layout(title=f"{fig.layout.title.text}: {objective}")


def _search_trials_table(study, names: list[str], data: StudyData | None) -> pd.DataFrame:
    """Optuna trials with their MLflow run: the trial's `mlflow_run_id` user attribute, else the MLflow
    trial run tagged `ablate.optuna_trial` = number. Numbers at their unit's precision."""
    by_number = {}
    if data is not None and "optuna_trial" in data.trials:
        by_number = {int(n): r for n, r in zip(data.trials["optuna_trial"], data.trials["run_id"]) if pd.notna(n)}
    rows = []
    for t in study.trials:
        run_id = t.user_attrs.get("mlflow_run_id") or by_number.get(t.number)
        values = t.values or [None] * len(names)
        rows.append({"trial": t.number, "state": t.state.name,
                     **{summaries.metric_label(n): summaries.format_number(v, summaries.metric_unit(n))
                        for n, v in zip(names, values)},
                     **{summaries.short_name(k): format_value(v) for k, v in t.params.items()},
                     "MLflow run": _run_link(data, run_id)})
    return pd.DataFrame(rows, dtype=object)  # object: pandas' string dtype would drop the links' Html type


def _run_link(data: StudyData | None, run_id: str | None) -> object:
    if not run_id:
        return None
    if data is None:
        return run_id
    base = redact_uri(data.tracking_uri).rstrip("/") if data.tracking_uri.startswith(("http://", "https://")) \
        else LOCAL_UI
    url = f"{base}/#/experiments/{data.experiment_id}/runs/{run_id}"
    return html.Html(f'<a href="{html.escape_attr(url)}">{run_id[:12]}</a>')
