"""Build the dashboard of a study (`build_report`); an Optuna search's is `dashboards.search_report`.

Pipeline: load.load_study and load.run_details (MLflow -> frames) -> summaries (numbers) -> figures
(Plotly) -> html (one page). The sections only draw what was loaded: none of them reads MLflow.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from ablate_common.redact import redact_uri
from dashboards import figures, findings, html, load, summaries
from dashboards.load import StudyData

DATASET_NOTE = (
    "The paper's numbers come from its datasets (ROCO, MedICaT, VQA-RAD, SLAKE, ...); ours from this study's. "
    "Absolute values are not comparable: compare the trend across settings and the ranking of the settings."
)


def build_report(study_name: str, tracking_uri: str, out: Path, spec: dict | None = None) -> Path:
    """Read the study from MLflow, write its dashboard to `out` (one offline HTML file), return the path.
    `spec` (the study file as a dict) defaults to the `spec.yaml` artifact of the study run."""
    data = load.load_study(study_name, tracking_uri, spec)
    page = html.Page(f"Study {study_name}", _subtitle(data))
    add_study_sections(page, data, load.run_details(data))
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


def add_study_sections(page: html.Page, data: StudyData, details: load.RunDetails) -> None:
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
    if details.curves is not None:
        _training_section(page, details.curves)
    if data.headline and len(finished):
        _cost_section(page, data, finished)
    if details.pictures is not None:
        _reconstruction_section(page, details.pictures)
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
    aliases = findings.study_aliases(data)  # the run names' short settings, as the findings table above
    table = summaries.decision_table(data.decisions, aliases)
    shown = table.assign(interval=[f"[{lo:+.3g}, {hi:+.3g}]" if pd.notna(lo) else "–"
                                   for lo, hi in zip(table["ci_low"], table["ci_high"])])
    shown = shown[["setting", "vs leader", "seeds", "difference", "interval", "verdict"]]
    classes = ["flag" if v == "undecided" else "" for v in table["verdict"]]
    section.blocks.append(html.table_html(shown, classes))
    differences = summaries.paired_differences(finished, data.decisions, data.headline, aliases)
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
        shown = summaries.significance_table(tests, by, summaries.metric_unit(data.headline))
        classes = ["best" if b else ("" if s else "flag") for b, s in zip(tests["is_best"], tests["significant"])]
        section.blocks.append(f"<h3>{' × '.join(by)}</h3>" + html.table_html(shown, classes))


def _training_section(page: html.Page, curves: load.TrainingCurves) -> None:
    section = page.section("Training curves", f"Up to {load.CURVES_PER_LEVEL} runs per setting, coloured by setting "
                                              f"({curves.drawn_settings} of {curves.settings} settings drawn).")
    for found in curves.figures:
        page.figure(section, figures.curves(found.history, found.keys, "label", found.title))
    if not section.blocks:
        section.blocks.append(html.paragraph("No step curves logged yet."))


def _cost_section(page: html.Page, data: StudyData, finished: pd.DataFrame) -> None:
    costs = [c for c in ("cost/pretrain_seconds", "cost/flops") if c in finished and finished[c].notna().any()]
    if not costs:
        return
    section = page.section("Cost", "Mean per setting; the Pareto front joins the settings nothing beats on both axes.")
    points = summaries.cost_points(finished, data.factors, data.headline, costs, data.mode)
    page.figure(section, figures.cost_vs_metric(points, costs, data.headline))


def _reconstruction_section(page: html.Page, pictures: list[load.Picture]) -> None:
    section = page.section("MIM reconstructions", "Latest logged grid: original / masked / reconstructed.")
    for picture in pictures:
        section.blocks.append(html.image_html(picture.png, f"{picture.label} · step {picture.step}"))
    if not section.blocks:
        section.blocks.append(html.paragraph("No reconstruction images logged."))


def _state_section(page: html.Page, data: StudyData) -> None:
    section = page.section("Trials and failures")
    if data.trials.empty:
        section.blocks.append(html.paragraph("No trial has started yet."))
        return
    page.figure(section, figures.states(summaries.state_counts(data.trials)))
    if data.trials["state"].isin(["FAILED", "KILLED"]).any():
        shown = summaries.failure_table(data.trials, data.factors)
        section.blocks.append(html.table_html(shown, ["flag"] * len(shown)))
