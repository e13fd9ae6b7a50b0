"""Thin Plotly renderers: each takes a small summary frame (dashboards.summaries) and draws it.

No numbers are computed here beyond picking columns; colours are stable per factor level so a
level looks the same in every figure of a page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

from dashboards.summaries import (MIN_SEEDS_FOR_CI, format_number, interval, is_numeric, metric_bounds,
                                  metric_label, metric_unit, short_name)

OURS = "#1f77b4"
PAPER = "#d62728"
FRONT = "#2ca02c"
GREY = "#9e9e9e"
PANEL_HEIGHT = 300


def level_colours(levels: Sequence[object]) -> dict[object, str]:
    """A colour per level: a sequential scale for numeric levels, a qualitative palette otherwise."""
    levels = list(dict.fromkeys(levels))
    if is_numeric(levels) and len(levels) > 1:
        order = sorted(levels)
        scale = sample_colorscale("Viridis", [i / (len(order) - 1) * 0.9 for i in range(len(order))])
        return dict(zip(order, scale))
    palette = qualitative.Plotly
    return {level: palette[i % len(palette)] for i, level in enumerate(levels)}


def _grid(n: int, cols: int = 3) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def _error(summary: pd.DataFrame, metric: str = "") -> dict:
    """Asymmetric error bars of the 95% CI, clipped to the metric's range; no bar below
    MIN_SEEDS_FOR_CI seeds (summaries.interval)."""
    drawn = interval(summary, metric_bounds(metric))
    plus = (drawn["high"] - summary["mean"]).fillna(0)
    minus = (summary["mean"] - drawn["low"]).fillna(0)
    return {"type": "data", "symmetric": False, "array": list(plus), "arrayminus": list(minus)}


CI_NOTE = f"bars: 95% CI over seeds, none below {MIN_SEEDS_FOR_CI} seeds"


def metric_vs_factor(summaries: Mapping[str, pd.DataFrame], factor: str, averaged_over: Sequence[str] = ()) -> go.Figure:
    """One panel per metric: mean ± 95% CI over seeds against the factor's levels.
    A line for a numeric factor, bars for a categorical one. summaries: metric -> summarize() frame."""
    metrics = list(summaries)
    rows, cols = _grid(len(metrics))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=metrics)
    for i, metric in enumerate(metrics):
        s = summaries[metric]
        numeric = is_numeric(list(s[factor]))
        x = list(s[factor]) if numeric else [str(v) for v in s[factor]]
        hover = [f"{format_number(m, metric_unit(metric))}, n={n} seeds" for m, n in zip(s["mean"], s["n"])]
        trace_args = {"x": x, "y": list(s["mean"]), "error_y": _error(s, metric), "name": "ours (mean ± 95% CI)",
                          "legendgroup": "ours", "showlegend": i == 0, "marker_color": OURS, "hovertext": hover}
        trace = go.Scatter(mode="lines+markers", **trace_args) if numeric else go.Bar(**trace_args)
        fig.add_trace(trace, row=i // cols + 1, col=i % cols + 1)
        fig.update_xaxes(title_text=short_name(factor), row=i // cols + 1, col=i % cols + 1,
                         type="linear" if numeric else "category")
        fig.update_yaxes(title_text=metric_label(metric).split("/")[-1], row=i // cols + 1, col=i % cols + 1)
    note = f", averaged over {', '.join(short_name(f) for f in averaged_over)}" if averaged_over else ""
    fig.update_layout(title=f"Metrics against {short_name(factor)}: mean over seeds{note}<br>"
                            f"<sup>{CI_NOTE}</sup>", height=PANEL_HEIGHT * rows + 100, margin={"t": 110})
    return fig


def heatmap(summary: pd.DataFrame, fx: str, fy: str, metric: str) -> go.Figure:
    """Means of `metric` over two factors; each cell reads "mean ± 95% CI half-width (n seeds)",
    without the ± below MIN_SEEDS_FOR_CI seeds."""
    xs = sorted(summary[fx].unique(), key=_order)
    ys = sorted(summary[fy].unique(), key=_order)
    z = [[None] * len(xs) for _ in ys]
    text = [[""] * len(xs) for _ in ys]
    unit = metric_unit(metric)
    drawn = interval(summary, metric_bounds(metric))
    for idx, r in summary.iterrows():
        i, j = ys.index(r[fy]), xs.index(r[fx])
        z[i][j] = r["mean"]
        half = (r["ci_high"] - r["ci_low"]) / 2 if drawn.loc[idx, "shown"] else None
        text[i][j] = format_number(r["mean"], unit) + (f" ± {format_number(half, unit)}" if half else "") \
            + f"<br>n={int(r['n'])}"
    fig = go.Figure(go.Heatmap(x=[format_level(v) for v in xs], y=[format_level(v) for v in ys], z=z, text=text,
                               texttemplate="%{text}", colorscale="Viridis",
                               colorbar_title=metric_label(metric).split("/")[-1]))
    fig.update_layout(title=f"{metric_label(metric)}: mean over seeds<br><sup>± 95% CI half-width; "
                            f"none below {MIN_SEEDS_FOR_CI} seeds</sup>",
                      xaxis_title=short_name(fx), yaxis_title=short_name(fy),
                      xaxis_type="category", yaxis_type="category", height=440)
    return fig


def ours_beside_paper(summary: pd.DataFrame, keys: Sequence[str], metric: str) -> go.Figure:
    """All of our settings over the reference's factors (mean over seeds), the paper's ranked ones
    marked with their rank. summary: summaries.ours_with_paper_rank's frame."""
    unit = metric_unit(metric)
    ties = summary["paper_rank"].value_counts()
    ranked = [(f"<br><b>paper #{int(r)}{' (tie)' if ties[r] > 1 else ''}</b>" + (f" ({v:g})" if pd.notna(v) else ""))
              if pd.notna(r) else "" for r, v in zip(summary["paper_rank"], summary["paper_value"])]
    cell = [f"{format_number(m, unit)} (n={int(n)}){mark}" for m, n, mark in zip(summary["mean"], summary["n"], ranked)]
    title = (f"Ours beside the paper: {metric_label(metric)}, every setting we ran<br><sup>the paper's ranked "
             "settings are marked (#1 = its best); compare the ranking, not the level</sup>")
    if len(keys) == 2:
        fx, fy = keys
        xs = sorted(summary[fx].unique(), key=_order)
        ys = sorted(summary[fy].unique(), key=_order)
        z = [[None] * len(xs) for _ in ys]
        text = [[""] * len(xs) for _ in ys]
        for (_, r), label in zip(summary.iterrows(), cell):
            z[ys.index(r[fy])][xs.index(r[fx])] = r["mean"]
            text[ys.index(r[fy])][xs.index(r[fx])] = label
        fig = go.Figure(go.Heatmap(x=[format_level(v) for v in xs], y=[format_level(v) for v in ys], z=z,
                                   text=text, texttemplate="%{text}", colorscale="Viridis",
                                   colorbar_title=metric_label(metric).split("/")[-1]))
        fig.update_layout(xaxis_title=short_name(fx), yaxis_title=short_name(fy), xaxis_type="category",
                          yaxis_type="category")
    else:
        labels = summary["setting"] if len(keys) != 1 else summary[keys[0]].map(format_level)
        colours = [PAPER if pd.notna(r) else OURS for r in summary["paper_rank"]]
        fig = go.Figure(go.Bar(x=list(labels), y=list(summary["mean"]), text=cell, textposition="auto",
                               marker_color=colours, error_y=_error(summary, metric)))
        fig.update_layout(xaxis_title=short_name(keys[0]) if len(keys) == 1 else "setting",
                          yaxis_title=metric_label(metric), xaxis_type="category")
    fig.update_layout(title=title, height=460, margin={"t": 100})
    return fig


def format_level(value: object) -> str:
    """A factor level on an axis: 4 not 4.0, 0.575 not 0.5753756195702879."""
    from ablate_common.naming import format_value

    return format_value(value)


def _order(value: object):
    return (0, float(value), "") if is_numeric([value]) else (1, 0.0, str(value))


def curves(history: pd.DataFrame, keys: Sequence[str], colour_by: str, title: str) -> go.Figure:
    """Step curves, one panel per metric key, one line per run coloured by its `colour_by` label.
    history: [run_id, key, step, value, <colour_by>]."""
    rows, cols = _grid(len(keys), cols=2)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(keys))
    colours = level_colours(list(history[colour_by]))
    shown: set[object] = set()
    for i, key in enumerate(keys):
        for (run_id, label), run in history[history["key"] == key].groupby(["run_id", colour_by], sort=False):
            run = run.sort_values("step")
            fig.add_trace(go.Scatter(x=list(run["step"]), y=list(run["value"]), mode="lines",
                                     name=str(label), legendgroup=str(label), showlegend=label not in shown,
                                     line={"color": colours[label], "width": 1.5}, hovertext=run_id),
                          row=i // cols + 1, col=i % cols + 1)
            shown.add(label)
        fig.update_xaxes(title_text="step", row=i // cols + 1, col=i % cols + 1)
        fig.update_yaxes(title_text=metric_label(key).split("/")[-1], row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(title=title, legend_title_text=colour_by, height=PANEL_HEIGHT * rows + 80)
    return fig


def cost_vs_metric(points: pd.DataFrame, costs: Sequence[str], metric: str) -> go.Figure:
    """Mean metric against mean cost per setting, one panel per cost; the Pareto front as a line.
    points: [label, mean, <cost>..., front_<cost>...]."""
    fig = make_subplots(rows=1, cols=len(costs), subplot_titles=list(costs))
    for col, cost in enumerate(costs, start=1):
        front = points[points[f"front_{cost}"]].sort_values(cost)
        fig.add_trace(go.Scatter(x=list(points[cost]), y=list(points["mean"]), mode="markers",
                                 text=list(points["label"]), name="settings", marker={"color": OURS, "size": 9},
                                 showlegend=col == 1, legendgroup="settings"), row=1, col=col)
        fig.add_trace(go.Scatter(x=list(front[cost]), y=list(front["mean"]), mode="lines+markers",
                                 line_shape="hv", name="Pareto front", marker={"color": FRONT, "size": 12, "symbol": "star"},
                                 line={"color": FRONT}, showlegend=col == 1, legendgroup="front",
                                 text=list(front["label"])), row=1, col=col)
        fig.update_xaxes(title_text=metric_label(cost), row=1, col=col, type="log" if cost.endswith("flops") else "linear")
    fig.update_yaxes(title_text=metric_label(metric), row=1, col=1)
    fig.update_layout(title=f"{metric_label(metric)} against cost (mean per setting)", height=420)
    return fig


def states(counts: pd.DataFrame) -> go.Figure:
    """Trials per state as bars (FINISHED green, PRUNED grey, failures red)."""
    palette = {"FINISHED": FRONT, "PRUNED": GREY, "FAILED": PAPER, "KILLED": "#ff7f0e", "RUNNING": OURS}
    fig = go.Figure(go.Bar(x=list(counts["state"]), y=list(counts["trials"]), text=list(counts["trials"]),
                           marker_color=[palette.get(s, GREY) for s in counts["state"]]))
    fig.update_layout(title="Trials by state", yaxis_title="trials", height=320)
    return fig


VERDICT_COLOURS = {"better": FRONT, "worse": PAPER, "equivalent": OURS, "undecided": GREY}


def paired_differences(table: pd.DataFrame, differences: pd.DataFrame, metric: str,
                       min_effect: float | None = None) -> go.Figure:
    """One row per comparison: each seed's paired difference (setting - leader) as a dot, the
    interval of the verdict as a bar, 0 and +-min_effect as lines."""
    fig = go.Figure()
    labels = [f"{s} vs {a}" for s, a in zip(table["setting"], table["vs leader"])]
    for label, (_, row) in zip(labels, table.iterrows()):
        colour = VERDICT_COLOURS.get(row["verdict"], GREY)
        if not math.isnan(row["ci_low"]):
            fig.add_trace(go.Scatter(x=[row["ci_low"], row["ci_high"]], y=[label, label], mode="lines",
                                     line={"color": colour, "width": 8}, opacity=0.35, showlegend=False,
                                     name=f"{row['verdict']} interval", hoverinfo="x+name"))
        points = differences[differences["comparison"] == label]
        fig.add_trace(go.Scatter(x=points["diff"], y=[label] * len(points), mode="markers+text",
                                 text=[f"s{s}" for s in points["seed"]], textposition="top center",
                                 marker={"color": colour, "size": 9}, name=row["verdict"], showlegend=False,
                                 hovertemplate="seed %{text}: %{x:.3g}<extra></extra>"))
    fig.add_vline(x=0, line_color="black", line_width=1)
    if min_effect:
        for x in (-min_effect, min_effect):
            fig.add_vline(x=x, line_color=GREY, line_dash="dot")
    fig.update_layout(title=f"Paired differences by seed: setting - leader on {metric}",
                      xaxis_title=f"difference in {short_name(metric)}", height=120 + 60 * max(1, len(table)),
                      margin={"l": 260})
    return fig
