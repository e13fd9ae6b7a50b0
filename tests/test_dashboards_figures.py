"""Figure builders and the HTML page on small DataFrames."""

import pandas as pd
import plotly.graph_objects as go
import plotly.offline
import pytest

from dashboards import figures, html, summaries


def _summary(factor, levels, means, half=0.1):
    return pd.DataFrame({factor: levels, "mean": means, "ci_low": [m - half for m in means],
                         "ci_high": [m + half for m in means], "n": [3] * len(levels), "std": [0.1] * len(levels)})


def test_metric_vs_factor_line_for_numbers_bars_for_categories():
    numeric = figures.metric_vs_factor({"a/acc": _summary("r", [0.25, 0.75], [0.5, 0.7]),
                                        "b/acc": _summary("r", [0.25, 0.75], [0.4, 0.6])}, "r")
    assert [type(t) for t in numeric.data] == [go.Scatter, go.Scatter]
    assert list(numeric.data[0].x) == [0.25, 0.75] and list(numeric.data[1].y) == [0.4, 0.6]
    assert list(numeric.data[0].error_y.array) == pytest.approx([0.1, 0.1])
    assert list(numeric.data[0].error_y.arrayminus) == pytest.approx([0.1, 0.1])
    assert [a.text for a in numeric.layout.annotations] == ["a/acc", "b/acc"]  # one panel per metric
    categorical = figures.metric_vs_factor({"a/acc": _summary("d", ["mlp", "transformer"], [0.5, 0.7])}, "d")
    assert isinstance(categorical.data[0], go.Bar) and list(categorical.data[0].x) == ["mlp", "transformer"]


def test_missing_ci_draws_no_error_bar():
    s = _summary("r", [1, 2], [0.5, 0.7])
    s.loc[0, ["ci_low", "ci_high"]] = float("nan")
    fig = figures.metric_vs_factor({"m": s}, "r")
    assert list(fig.data[0].error_y.array) == pytest.approx([0.0, 0.1])


def test_heatmap_places_means_by_level():
    s = pd.DataFrame({"x": [0.25, 0.75, 0.25, 0.75], "y": [0.15, 0.15, 0.3, 0.3], "mean": [1.0, 2.0, 3.0, 4.0],
                      "ci_low": [0.9] * 4, "ci_high": [1.1] * 4, "n": [2] * 4})
    fig = figures.heatmap(s, "x", "y", "t/acc")
    assert [list(row) for row in fig.data[0].z] == [[1.0, 2.0], [3.0, 4.0]] and list(fig.data[0].x) == ["0.25", "0.75"]


def test_ours_beside_paper_shows_every_setting_and_marks_the_papers_ranks_as_integers():
    ours = pd.DataFrame({"x": [0.25, 0.25, 0.75, 0.75], "y": [0.15, 0.5, 0.15, 0.5], "mean": [55.0, 50.0, 52.0, 48.0],
                         "ci_low": [50.0] * 4, "ci_high": [60.0] * 4, "n": [3] * 4, "std": [1.0] * 4,
                         "setting": ["a", "b", "c", "d"], "paper_rank": [float("nan"), 2.0, 1.0, float("nan")],
                         "paper_value": [float("nan")] * 4})
    fig = figures.ours_beside_paper(ours, ["x", "y"], "t/overall_acc")
    heat = fig.data[0]
    assert [list(row) for row in heat.z] == [[55.0, 52.0], [50.0, 48.0]]  # all four of ours, not only the ranked two
    assert heat.text[0][1] == "52.0 (n=3)<br><b>paper #1</b>" and heat.text[1][0].endswith("paper #2</b>")
    assert heat.text[0][0] == "55.0 (n=3)" and heat.colorbar.title.text == "overall_acc (%)"
    bars = figures.ours_beside_paper(ours.assign(y=0.15).head(2).assign(x=["mlp", "tr"]), ["x"], "t/overall_acc")
    assert bars.layout.yaxis.title.text == "t/overall_acc (%)" and list(bars.data[0].x) == ["mlp", "tr"]


def test_accuracy_axes_carry_their_unit():
    fig = figures.metric_vs_factor({"t/overall_acc": _summary("r", [0.25, 0.75], [50.0, 55.0])}, "r")
    assert fig.layout.yaxis.title.text == "overall_acc (%)"
    s = pd.DataFrame({"x": [1], "y": [2], "mean": [50.0], "ci_low": [40.0], "ci_high": [60.0], "n": [3]})
    assert figures.heatmap(s, "x", "y", "t/acc").data[0].colorbar.title.text == "acc (%)"
    points = pd.DataFrame({"label": ["x"], "mean": [50.0], "cost/pretrain_seconds": [10.0],
                           "front_cost/pretrain_seconds": [True]})
    cost = figures.cost_vs_metric(points, ["cost/pretrain_seconds"], "t/acc")
    assert cost.layout.xaxis.title.text == "cost/pretrain_seconds (s)" and cost.layout.yaxis.title.text == "t/acc (%)"


def test_intervals_are_clipped_to_the_range_and_dropped_below_three_seeds():
    s = pd.DataFrame({"r": [1, 2, 3], "mean": [1.0, 50.0, 99.0], "ci_low": [-1.4, 40.0, 90.0],
                      "ci_high": [3.4, 60.0, 108.0], "n": [3, 2, 3]})
    bars = figures.metric_vs_factor({"t/acc": s}, "r").data[0].error_y
    assert list(bars.arrayminus) == pytest.approx([1.0, 0.0, 9.0])  # down to 0 %, not -1.4 %
    assert list(bars.array) == pytest.approx([2.4, 0.0, 1.0])  # up to 100 %; none with 2 seeds
    cells = figures.heatmap(s.assign(x=s["r"], y=1), "x", "y", "t/acc").data[0].text[0]
    assert list(cells) == ["1.0 ± 2.4<br>n=3", "50.0<br>n=2", "99.0 ± 9.0<br>n=3"]


def test_levels_print_short():
    assert [figures.format_level(v) for v in (0.5753756195702879, 4.0, True, "mlp")] == ["0.575", "4", "true", "mlp"]


def test_curves_one_line_per_run_and_one_legend_entry_per_label():
    history = pd.DataFrame([(run, key, step, step * 0.1, label) for run, label in (("r1", "a"), ("r2", "a"), ("r3", "b"))
                            for key in ("pretrain/mim_loss", "pretrain/mlm_loss") for step in (1, 2, 3)],
                           columns=["run_id", "key", "step", "value", "label"])
    fig = figures.curves(history, ["pretrain/mim_loss", "pretrain/mlm_loss"], "label", "Pre-training")
    assert len(fig.data) == 6
    assert [t.name for t in fig.data if t.showlegend] == ["a", "b"]
    colours = {t.name: t.line.color for t in fig.data}
    assert len(set(colours.values())) == 2 and all(t.line.color == colours[t.name] for t in fig.data)


def test_cost_vs_metric_draws_the_front():
    points = pd.DataFrame({"label": ["x", "y", "z"], "mean": [0.5, 0.7, 0.6], "cost/flops": [1e9, 2e9, 3e9]})
    points["front_cost/flops"] = summaries.pareto_front(points, "cost/flops", "mean", "max")
    fig = figures.cost_vs_metric(points, ["cost/flops"], "t/acc")
    assert list(fig.data[1].text) == ["x", "y"] and fig.layout.xaxis.type == "log"


def test_level_colours_sequential_for_numbers():
    colours = figures.level_colours([0.75, 0.25, 0.5])
    assert set(colours) == {0.25, 0.5, 0.75} and len(set(colours.values())) == 3
    assert figures.level_colours(["mlp", "transformer"]) == {"mlp": "#636EFA", "transformer": "#EF553B"}


def test_page_embeds_plotlyjs_once_and_escapes_tables():
    page = html.Page("T <1>", "sub")
    section = page.section("S", "intro")
    for _ in range(3):
        page.figure(section, go.Figure(go.Scatter(x=[1, 2], y=[3, 4])))
    section.blocks.append(html.table_html(pd.DataFrame({"a": ["<script>x</script>"], "b": [float("nan")]})))
    section.blocks.append(html.image_html(b"\x89PNG fake", "a picture"))
    text = html.render(page)
    plotlyjs = plotly.offline.get_plotlyjs()
    assert text.count(plotlyjs[:200]) == 1 and "cdn.plot.ly" not in text.replace(plotlyjs, "")
    assert text.count('class="plotly-graph-div"') == 3 and "data-figures='3'" in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text and "<td>–</td>" in text
    assert "data:image/png;base64,iVBORyBmYWtl" in text and "T &lt;1&gt;" in text
