"""Build the dashboard of a study (`build_report`); an Optuna search's is `dashboards.search_report`.

Pipeline: load.load_study (MLflow -> frames) -> summaries (numbers) -> figures (Plotly) -> html (one page).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from ablate_common.redact import redact_uri
from ablate_common.store import open_client
from dashboards import figures, findings, html, load, summaries
from dashboards.load import StudyData

CURVES_PER_LEVEL = 3  # runs drawn per colour in a curve figure: enough to see seed spread
MAX_CURVE_RUNS = 24  # curves cost one MLflow request per run and key: cap them for big studies
MAX_PICTURES = 12
MASK_RATIO = "model.mim.mask_ratio"
DATASET_NOTE = (
    "The paper's numbers come from its datasets (ROCO, MedICaT, VQA-RAD, SLAKE, ...); ours from this study's. "
    "Absolute values are not comparable: compare the trend across settings and the ranking of the settings."
)


def build_report(study_name: str, tracking_uri: str, out: Path, spec: dict | None = None) -> Path:
    """Read the study from MLflow, write its dashboard to `out` (one offline HTML file), return the path.
    `spec` (the study file as a dict) defaults to the `spec.yaml` artifact of the study run."""
    data = load.load_study(study_name, tracking_uri, spec)
    page = html.Page(f"Study {study_name}", _subtitle(data))
    add_study_sections(page, data)
    return html.write(page, out)


def _subtitle(data: StudyData) -> str:
    counts = summaries.state_counts(data.trials) if len(data.trials) else pd.DataFrame(columns=["state", "trials"])
    states = ", ".join(f"{n} {s.lower()}" for s, n in zip(counts["state"], counts["trials"])) or "no trials yet"
    metric = f"headline {summaries.metric_label(data.headline)}, {data.mode}imised" if data.headline else "no metrics yet"
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"profile {data.spec.get('profile', '?')} · {len(data.trials)} trials: {states} · {metric} · "
            f"{redact_uri(data.tracking_uri)} · built {now}")


SMOKE_WARNING = ("Smoke profile: tiny models trained for a few seconds to check that the platform works. "
                 "Its accuracies are meaningless and say nothing about the paper; this page makes no verdict. "
                 "Run the study at the laptop (default) or paper profile for results.")


def add_study_sections(page: html.Page, data: StudyData) -> None:
    """Every section of a study dashboard, in reading order."""
    finished = data.trials[data.trials["state"] == "FINISHED"]
    if data.spec.get("profile") == "smoke":
        page.notice = SMOKE_WARNING
    if data.headline and len(finished):
        _findings_section(page, data)
        _verdict_section(page, data, finished)
        _headline_section(page, data, finished)
        _reference_section(page, data, finished)
        _significance_section(page, data, finished)
    client = open_client(data.tracking_uri)
    _training_section(page, data, client)
    if data.headline and len(finished):
        _cost_section(page, data, finished)
    _reconstruction_section(page, data, client)
    _state_section(page, data)


def _verdict_section(page: html.Page, data: StudyData, finished: pd.DataFrame) -> None:
    """What the study decided (decisions.json): each setting against the leader, and the paired
    differences by seed behind each verdict."""
    seeds = data.spec.get("seeds")
    min_effect = seeds.get("min_effect") if isinstance(seeds, dict) else None
    section = page.section(
        "Verdicts", f"Each setting against the leader on {data.headline}, paired by seed: better / worse when the "
                    "interval excludes 0" + (f", equivalent when it lies inside ±{min_effect:g}" if min_effect else "")
                    + ", undecided otherwise. The intervals hold over every look of the race (adaptive seeds).")
    if not data.decisions:
        section.blocks.append(html.paragraph("No verdicts yet: `ablate run` writes them (decisions.json) when the "
                                             "study ends.", "note"))
        return
    table = summaries.decision_table(data.decisions)
    shown = table.assign(interval=[f"[{lo:+.3g}, {hi:+.3g}]" if pd.notna(lo) else "–"
                                   for lo, hi in zip(table["ci_low"], table["ci_high"])])
    shown = shown[["setting", "vs leader", "seeds", "difference", "interval", "verdict"]]
    classes = ["flag" if v == "undecided" else "" for v in table["verdict"]]
    section.blocks.append(html.table_html(shown, classes))
    differences = summaries.paired_differences(finished, data.decisions, data.headline)
    if len(differences):
        page.figure(section, figures.paired_differences(table, differences, data.headline, min_effect))


def _headline_section(page: html.Page, data: StudyData, finished: pd.DataFrame) -> None:
    section = page.section("Results by factor", "Mean over seeds with a 95% t-interval; one panel per task metric.")
    for factor in data.factors:
        per_metric = {m: summaries.summarize(finished, [factor], m) for m in data.metrics}
        others = [f for f in data.factors if f != factor]
        page.figure(section, figures.metric_vs_factor(per_metric, factor, others))
    numeric = [f for f in data.factors if summaries.is_numeric(list(finished[f]))]
    if len(numeric) >= 2:
        fx, fy = numeric[:2]
        page.figure(section, figures.heatmap(summaries.summarize(finished, [fx, fy], data.headline),
                                             fx, fy, data.headline))


def _findings_section(page: html.Page, data: StudyData) -> None:
    """The verdict per paper finding (the table `ablate findings` prints), first thing on the page."""
    if not (data.spec.get("reference") or {}).get("ranking") and not (data.spec.get("reference") or {}).get("values"):
        return
    section = page.section("The paper's findings, and ours")
    try:
        report = findings.StudyFindings.of(data)
    except KeyError as error:  # the reference names a path this study does not vary
        section.blocks.append(html.paragraph(f"The reference block cannot be compared: {error.args[0]}", "note"))
        return
    if report.source:
        section.blocks.append(html.paragraph(f"Paper: {report.source}"))
    if report.findings:
        classes = {findings.Verdict.AGREES: "best", findings.Verdict.DISAGREES: "flag"}
        section.blocks.append(html.table_html(report.table(), [classes.get(f.verdict, "") for f in report.findings]))
    if report.profile != "smoke":  # a smoke page already says so in red under its title
        section.blocks.append(html.paragraph(report.caveat()))


def _reference_section(page: html.Page, data: StudyData, finished: pd.DataFrame) -> None:
    reference = data.spec.get("reference") or {}
    section = page.section("Beside the paper")
    section.blocks.append(html.paragraph(DATASET_NOTE, "note"))
    if not (reference.get("ranking") or reference.get("values")):
        section.blocks.append(html.paragraph("This study file has no `reference` block, so there is nothing to compare."))
        return
    paper_metric = reference.get("metric", data.headline)
    if reference.get("note"):
        section.blocks.append(html.paragraph(f"Paper ({paper_metric}): {reference['note']}"))
    try:
        ours = summaries.ours_with_paper_rank(finished, reference, data.headline, data.mode)
        _, agreement = summaries.compare_with_reference(finished, reference, data.headline, data.mode)
    except KeyError as error:  # the reference names a path this study does not vary
        section.blocks.append(html.paragraph(f"The reference block cannot be compared: {error.args[0]}", "note"))
        return
    keys = [c for c in ours.columns if c not in ("mean", "ci_low", "ci_high", "n", "std", "setting", "paper_rank",
                                                   "paper_value")]
    if ours["mean"].notna().any():
        page.figure(section, figures.ours_beside_paper(ours[ours["mean"].notna()], keys, data.headline))
    if data.spec.get("profile") != "smoke":
        section.blocks.append(html.paragraph(_agreement_text(agreement)))


def _agreement_text(agreement: dict) -> str:
    if agreement["n"] == 0:
        return "None of the paper's settings has finished trials here yet."
    best = {True: "Our best setting is the paper's best.", False: "Our best setting is NOT the paper's best.",
            None: ""}[agreement["best_agrees"]]
    tau = agreement["kendall_tau"]
    tau_text = (f"Kendall's tau between the paper's ranking and ours over its {agreement['n']} ranked settings: "
                f"{tau:.2f} (1 = same order, -1 = reversed).") if pd.notna(tau) else ""
    return f"{best} {tau_text}".strip()


def _significance_section(page: html.Page, data: StudyData, finished: pd.DataFrame) -> None:
    section = page.section(
        "Are the differences real?",
        f"Each level against the best level on {data.headline}: paired t-test over seeds (pairs agree on the seed "
        "and the other factors), a bootstrap when there are fewer than two pairs. Rows not significant at 5% "
        "are shaded red: the difference may be noise.")
    groupings = [[f] for f in data.factors] + ([list(data.factors)] if len(data.factors) > 1 else [])
    for by in groupings:
        pair_on = ["seed"] + [f for f in data.factors if f not in by]
        tests = summaries.paired_vs_best(finished, by, data.headline, data.mode, pair_on)
        if tests.empty:
            continue
        unit = summaries.metric_unit(data.headline)
        points = " (points)" if unit == "%" else (f" ({unit})" if unit else "")
        shown = pd.DataFrame({
            "level": [summaries.format_setting({c: r[c] for c in by}) for _, r in tests.iterrows()],
            f"mean{f' ({unit})' if unit else ''}": [summaries.format_number(m, unit) for m in tests["mean"]],
            f"difference vs best{points}": [summaries.format_number(d, unit) for d in tests["diff"]],
            "pairs": tests["n_pairs"], "test": tests["test"],
            "p": [f"{p:.3f}" if pd.notna(p) else "–" for p in tests["p_value"]],
            "significant?": ["best" if b else ("yes" if s else "no") for b, s in zip(tests["is_best"], tests["significant"])],
        })
        classes = ["best" if b else ("" if s else "flag") for b, s in zip(tests["is_best"], tests["significant"])]
        section.blocks.append(f"<h3>{' × '.join(by)}</h3>" + html.table_html(shown, classes))


def _setting_labels(trials: pd.DataFrame, factors: list[str]) -> pd.Series:
    """A short label per trial from the factors that vary among `trials` ("mim.mask_ratio=0.75")."""
    varying = [f for f in factors if trials[f].astype(str).nunique() > 1]
    if not varying:
        return pd.Series(["all trials"] * len(trials), index=trials.index)
    return trials.apply(lambda r: summaries.format_setting({f: r[f] for f in varying}), axis=1)


def _drawn_trials(trials: pd.DataFrame, factors: list[str], per_label: int, cap: int) -> pd.DataFrame:
    """The trials a figure draws: round robin over settings (one of each first), at most `per_label`
    per setting and `cap` in all, with their setting label."""
    trials = trials.assign(label=_setting_labels(trials, factors))
    rank = trials.groupby("label", sort=False).cumcount()
    return trials[rank < per_label].assign(_rank=rank).sort_values("_rank", kind="stable").head(cap)


def _pretrain_of(trials: pd.DataFrame, stages: pd.DataFrame) -> pd.Series:
    """Each trial's pre-train run: its `ablate.pretrain_run_id` link, else its pre-train child run."""
    children = stages[stages["kind"] == "pretrain"].drop_duplicates("parent_run_id")
    child = trials["run_id"].map(children.set_index("parent_run_id")["run_id"])
    return trials["pretrain_run_id"].where(trials["pretrain_run_id"].notna(), child)


def _training_section(page: html.Page, data: StudyData, client: MlflowClient) -> None:
    if data.trials.empty:
        return
    drawn = _drawn_trials(data.trials, data.factors, CURVES_PER_LEVEL, MAX_CURVE_RUNS)
    settings = _setting_labels(data.trials, data.factors).nunique()
    section = page.section("Training curves", f"Up to {CURVES_PER_LEVEL} runs per setting, coloured by setting "
                                              f"({drawn['label'].nunique()} of {settings} settings drawn).")
    stages = load.stage_runs(client, data.experiment_id, list(drawn["run_id"]))
    pretrain = drawn.assign(pretrain=_pretrain_of(drawn, stages)).dropna(subset=["pretrain"])
    pretrain = pretrain.drop_duplicates("pretrain")  # trials that differ only in fine-tuning share one
    if len(pretrain):
        pretrain = pretrain.assign(label=_setting_labels(pretrain, data.factors))
        keys = sorted({k for run_id in pretrain["pretrain"] for k in _metric_keys(client, stages, run_id)
                       if k.startswith("pretrain/") and _is_curve(k)})
        history = load.metric_histories(client, list(pretrain["pretrain"]), keys)
        keys = _over_steps(history, keys)
        if keys:
            history = history.merge(pretrain[["pretrain", "label"]], left_on="run_id", right_on="pretrain")
            page.figure(section, figures.curves(history, keys, "label", "Pre-training"))
    finetune = stages[(stages["kind"] == "finetune") & stages["task"].notna()]
    finetune = finetune.merge(drawn[["run_id", "label"]], left_on="parent_run_id", right_on="run_id",
                              suffixes=("", "_trial"))
    for task, runs in finetune.groupby("task", sort=True):
        keys = sorted({k for ks in runs["metric_keys"] for k in ks if k.startswith(f"{task}/") and _is_curve(k)})
        history = load.metric_histories(client, list(runs["run_id"]), keys)
        keys = _over_steps(history, keys)
        if keys:
            history = history.merge(runs[["run_id", "label"]], on="run_id")
            page.figure(section, figures.curves(history, keys, "label", f"Fine-tuning: {task}"))
    if not section.blocks:
        section.blocks.append(html.paragraph("No step curves logged yet."))


def _metric_keys(client: MlflowClient, stages: pd.DataFrame, run_id: str) -> list[str]:
    known = stages.loc[stages["run_id"] == run_id, "metric_keys"]
    return list(known.iloc[0]) if len(known) else load.run_metric_keys(client, run_id)


def _is_curve(key: str) -> bool:
    """Losses, accuracies and validation metrics are learning curves; lr and throughput are not."""
    name = key.split("/", 1)[1]
    return "loss" in name or name.endswith("acc") or name.startswith("val_")


def _over_steps(history: pd.DataFrame, keys: list[str]) -> list[str]:
    """Keys logged at several steps (a final number or a single validation point is no curve)."""
    return [k for k in keys if history.loc[history["key"] == k, "step"].nunique() > 1]


def _cost_section(page: html.Page, data: StudyData, finished: pd.DataFrame) -> None:
    costs = [c for c in ("cost/pretrain_seconds", "cost/flops") if c in finished and finished[c].notna().any()]
    if not costs:
        return
    section = page.section("Cost", "Mean per setting; the Pareto front joins the settings nothing beats on both axes.")
    by = data.factors or ["seed"]
    points = finished.groupby(by, sort=False, dropna=False)[[data.headline, *costs]].mean().reset_index()
    points = points.rename(columns={data.headline: "mean"})
    points["label"] = _setting_labels(points, data.factors) if data.factors else points["seed"].astype(str)
    for cost in costs:
        points[f"front_{cost}"] = summaries.pareto_front(points, cost, "mean", data.mode)
    page.figure(section, figures.cost_vs_metric(points, costs, data.headline))


def _reconstruction_section(page: html.Page, data: StudyData, client: MlflowClient) -> None:
    """One picture per image mask ratio when that is a factor, else one per setting (at most MAX_PICTURES)."""
    if data.trials.empty:
        return
    by = [MASK_RATIO] if MASK_RATIO in data.factors else data.factors
    trials = data.trials.sort_values("state", key=lambda s: s != "FINISHED", kind="stable")  # finished first
    drawn = _drawn_trials(trials, by, 1, MAX_PICTURES)
    links = drawn["pretrain_run_id"]
    if links.isna().any():
        stages = load.stage_runs(client, data.experiment_id, list(drawn.loc[links.isna(), "run_id"]))
        links = _pretrain_of(drawn, stages)
    section = page.section("MIM reconstructions", "Latest logged grid: original / masked / reconstructed.")
    for label, run_id in zip(drawn["label"], links):
        found = load.latest_reconstruction(client, run_id) if isinstance(run_id, str) else None
        if found:
            step, png = found
            section.blocks.append(html.image_html(png, f"{label} · step {step}"))
    if not section.blocks:
        section.blocks.append(html.paragraph("No reconstruction images logged."))


def _state_section(page: html.Page, data: StudyData) -> None:
    section = page.section("Trials and failures")
    if data.trials.empty:
        section.blocks.append(html.paragraph("No trial has started yet."))
        return
    page.figure(section, figures.states(summaries.state_counts(data.trials)))
    failed = data.trials[data.trials["state"].isin(["FAILED", "KILLED"])]
    if len(failed):
        shown = pd.DataFrame({
            "trial": failed["trial_id"], "setting": _setting_labels(data.trials, data.factors).loc[failed.index],
            "seed": failed["seed"], "state": failed["state"], "error": failed["error"].replace("", "–"),
            "run": failed["run_id"]})
        section.blocks.append(html.table_html(shown, ["flag"] * len(shown)))
