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

from dashboards.summaries import is_numeric, short_name

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


def _error(summary: pd.DataFrame) -> dict:
    """Asymmetric error bars from ci_low/ci_high (a missing CI draws no bar)."""
    plus = (summary["ci_high"] - summary["mean"]).fillna(0)
    minus = (summary["mean"] - summary["ci_low"]).fillna(0)
    return {"type": "data", "symmetric": False, "array": list(plus), "arrayminus": list(minus)}


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
        hover = [f"n={n}" for n in s["n"]]
        trace_args = {"x": x, "y": list(s["mean"]), "error_y": _error(s), "name": "ours (mean ± 95% CI)",
                          "legendgroup": "ours", "showlegend": i == 0, "marker_color": OURS, "hovertext": hover}
        trace = go.Scatter(mode="lines+markers", **trace_args) if numeric else go.Bar(**trace_args)
        fig.add_trace(trace, row=i // cols + 1, col=i % cols + 1)
        fig.update_xaxes(title_text=short_name(factor), row=i // cols + 1, col=i % cols + 1,
                         type="linear" if numeric else "category")
    note = f" (averaged over {', '.join(short_name(f) for f in averaged_over)})" if averaged_over else ""
    fig.update_layout(title=f"Metrics against {factor}{note}", height=PANEL_HEIGHT * rows + 80,
                      margin={"t": 90})
    return fig


def heatmap(summary: pd.DataFrame, fx: str, fy: str, metric: str) -> go.Figure:
    """Means of `metric` over two numeric factors; the cell text shows mean ± CI half-width and n."""
    xs = sorted(summary[fx].unique())
    ys = sorted(summary[fy].unique())
    z = [[None] * len(xs) for _ in ys]
    text = [[""] * len(xs) for _ in ys]
    for _, r in summary.iterrows():
        i, j = ys.index(r[fy]), xs.index(r[fx])
        z[i][j] = r["mean"]
        half = (r["ci_high"] - r["ci_low"]) / 2
        text[i][j] = f"{r['mean']:.3g}" + (f" ± {half:.2g}" if pd.notna(half) else "") + f"<br>n={int(r['n'])}"
    fig = go.Figure(go.Heatmap(x=[str(v) for v in xs], y=[str(v) for v in ys], z=z, text=text,
                               texttemplate="%{text}", colorscale="Viridis", colorbar_title=metric.split("/")[-1]))
    fig.update_layout(title=f"{metric}: mean over seeds", xaxis_title=short_name(fx), yaxis_title=short_name(fy),
                      xaxis_type="category", yaxis_type="category", height=420)
    return fig


def ours_vs_paper(table: pd.DataFrame, keys: Sequence[str], metric: str, paper_metric: str) -> go.Figure:
    """Two panels with the same x axis: ours (mean ± CI) and the paper's (its values, or its rank
    when it gives only a ranking). `table` is compare_with_reference's table plus one column per key."""
    has_values = table["paper_value"].notna().any()
    paper_y = table["paper_value"] if has_values else table["paper_rank"]
    paper_title = f"paper: {paper_metric}" if has_values else "paper: rank (1 = best)"
    if len(keys) == 2 and all(is_numeric(list(table[k])) for k in keys):
        return _paired_heatmaps(table, keys, paper_y, metric, paper_title)
    numeric = len(keys) == 1 and is_numeric(list(table[keys[0]]))
    frame = table.sort_values(keys[0]) if numeric else table
    x = list(frame[keys[0]]) if numeric else list(frame["setting"])
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"ours: {metric}", paper_title])
    ours = {"x": x, "y": list(frame["mean"]), "error_y": _error(frame), "name": "ours (mean ± 95% CI)", "marker_color": OURS}
    paper = {"x": x, "y": list(paper_y.loc[frame.index]), "name": "paper", "marker_color": PAPER}
    if numeric:
        fig.add_trace(go.Scatter(mode="lines+markers", **ours), row=1, col=1)
        fig.add_trace(go.Scatter(mode="lines+markers", line_dash="dash", **paper), row=1, col=2)
    else:
        fig.add_trace(go.Bar(**ours), row=1, col=1)
        fig.add_trace(go.Bar(**paper), row=1, col=2)
    if not has_values:
        fig.update_yaxes(autorange="reversed", dtick=1, row=1, col=2)
    axis_title = short_name(keys[0]) if numeric else "setting"
    fig.update_xaxes(title_text=axis_title, type="linear" if numeric else "category")
    fig.update_layout(title="Ours beside the paper (compare the trend and the ranking, not the level)", height=420)
    return fig


def _paired_heatmaps(table: pd.DataFrame, keys: Sequence[str], paper_y: pd.Series, metric: str,
                     paper_title: str) -> go.Figure:
    fx, fy = keys
    xs, ys = sorted(table[fx].unique()), sorted(table[fy].unique())
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"ours: {metric}", paper_title], horizontal_spacing=0.15)
    for col, values, scale in ((1, table["mean"], "Viridis"), (2, paper_y, "Reds")):
        z = [[None] * len(xs) for _ in ys]
        for idx, r in table.iterrows():
            z[ys.index(r[fy])][xs.index(r[fx])] = values.loc[idx]
        fig.add_trace(go.Heatmap(x=[str(v) for v in xs], y=[str(v) for v in ys], z=z, colorscale=scale,
                                 texttemplate="%{z:.3g}", showscale=False), row=1, col=col)
    fig.update_xaxes(title_text=short_name(fx), type="category")
    fig.update_yaxes(title_text=short_name(fy), type="category")
    fig.update_layout(title="Ours beside the paper (compare the trend and the ranking, not the level)", height=420)
    return fig


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
        fig.update_xaxes(title_text=cost, row=1, col=col, type="log" if cost.endswith("flops") else "linear")
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_layout(title=f"{metric} against cost (mean per setting)", height=420)
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
