"""dashboards.summaries against numbers computed by hand."""

import math

import pandas as pd
import pytest

from dashboards import summaries as S


def test_mean_ci_of_one_two_three():
    # t(0.975, df=2) = 4.302653; s = 1; half-width = 4.302653 / sqrt(3) = 2.484138
    mean, low, high, n = S.mean_ci([1, 2, 3])
    assert (mean, n) == (2.0, 3)
    assert low == pytest.approx(2 - 2.484138, abs=1e-6)
    assert high == pytest.approx(2 + 2.484138, abs=1e-6)


def test_mean_ci_edge_cases():
    mean, low, high, n = S.mean_ci([5.0])
    assert mean == 5.0 and n == 1 and math.isnan(low) and math.isnan(high)
    assert S.mean_ci([])[3] == 0 and math.isnan(S.mean_ci([])[0])
    assert S.mean_ci([2, 2, 2])[1:3] == (2.0, 2.0)
    assert S.mean_ci([1, float("nan"), 3])[::3] == (2.0, 2)  # NaN (a missing metric) is skipped


def test_parse_value_and_same_value():
    assert S.parse_value("0.75") == 0.75 and S.parse_value("4") == 4 and S.parse_value("true") is True
    assert S.parse_value("mlp") == "mlp" and S.parse_value("None") is None
    assert S.same_value("0.75", 0.75) and S.same_value(1, 1.0) and not S.same_value("mlp", "transformer")
    assert S.is_numeric([0.25, 1]) and not S.is_numeric([True, False]) and not S.is_numeric(["a", 1])


def _trials(rows):
    return pd.DataFrame(rows, columns=["ratio", "seed", "acc"])


def test_summarize_sorts_numeric_levels_and_counts_seeds():
    trials = _trials([(0.75, 0, 3.0), (0.75, 1, 4.0), (0.75, 2, 5.0), (0.25, 0, 1.0), (0.25, 1, 2.0), (0.25, 2, 4.0)])
    s = S.summarize(trials, ["ratio"], "acc")
    assert list(s["ratio"]) == [0.25, 0.75]
    assert list(s["mean"]) == pytest.approx([7 / 3, 4.0])
    assert list(s["n"]) == [3, 3]
    # level 0.75: values 3,4,5 -> s = 1 -> same half-width as [1, 2, 3]
    assert s.loc[1, "ci_high"] - s.loc[1, "mean"] == pytest.approx(2.484138, abs=1e-6)


def test_summarize_keeps_categorical_order():
    trials = pd.DataFrame({"decoder": ["transformer", "mlp", "transformer"], "acc": [1.0, 2.0, 3.0]})
    s = S.summarize(trials, ["decoder"], "acc")
    assert list(s["decoder"]) == ["transformer", "mlp"] and list(s["mean"]) == [2.0, 2.0]


def test_paired_t_against_best_level():
    # best 0.75: 3,4,5; 0.25: 1,2,4 -> differences -2,-2,-1: mean -5/3, sd 1/sqrt(3), t = -5 (df 2)
    # two-sided p = 2 * (1/2 - 5 / (2 sqrt(27))) = 0.037750
    trials = _trials([(0.75, 0, 3.0), (0.75, 1, 4.0), (0.75, 2, 5.0), (0.25, 0, 1.0), (0.25, 1, 2.0), (0.25, 2, 4.0)])
    tests = S.paired_vs_best(trials, ["ratio"], "acc", "max", ["seed"]).set_index("ratio")
    assert tests.loc[0.75, "is_best"] and tests.loc[0.75, "test"] == "best"
    assert tests.loc[0.25, "test"] == "paired t" and tests.loc[0.25, "n_pairs"] == 3
    assert tests.loc[0.25, "diff"] == pytest.approx(-5 / 3)
    assert tests.loc[0.25, "p_value"] == pytest.approx(0.037750, abs=1e-6)
    assert tests.loc[0.25, "significant"]


def test_paired_t_flags_noise_and_respects_mode():
    # differences +1, -1, +1 -> mean 1/3, not significant
    trials = _trials([(0.5, 0, 2.0), (0.5, 1, 2.0), (0.5, 2, 2.0), (0.9, 0, 3.0), (0.9, 1, 1.0), (0.9, 2, 3.0)])
    tests = S.paired_vs_best(trials, ["ratio"], "acc", "max", ["seed"]).set_index("ratio")
    assert tests.loc[0.9, "is_best"] and not tests.loc[0.5, "significant"] and tests.loc[0.5, "p_value"] > 0.3
    assert S.paired_vs_best(trials, ["ratio"], "acc", "min", ["seed"]).set_index("ratio").loc[0.5, "is_best"]


def test_constant_differences_are_certain():
    trials = _trials([(1, 0, 2.0), (1, 1, 3.0), (2, 0, 1.0), (2, 1, 2.0)])
    assert S.paired_vs_best(trials, ["ratio"], "acc", "max", ["seed"]).set_index("ratio").loc[2, "p_value"] == 0.0


def test_bootstrap_when_seeds_do_not_pair():
    far = _trials([(1, 0, 10.0), (1, 1, 11.0), (2, 2, 0.0), (2, 3, 1.0)])
    row = S.paired_vs_best(far, ["ratio"], "acc", "max", ["seed"]).set_index("ratio").loc[2]
    assert row["test"] == "bootstrap" and row["n_pairs"] == 0 and row["p_value"] == 0.0 and row["significant"]
    near = _trials([(1, 0, 1.0), (1, 1, 2.0), (2, 2, 1.0), (2, 3, 2.0)])
    assert S.paired_vs_best(near, ["ratio"], "acc", "max", ["seed"]).set_index("ratio").loc[2, "p_value"] == 1.0


def test_too_few_seeds_gives_no_test():
    trials = _trials([(1, 0, 2.0), (2, 0, 1.0)])
    row = S.paired_vs_best(trials, ["ratio"], "acc", "max", ["seed"]).set_index("ratio").loc[2]
    assert row["test"] == "too few seeds" and math.isnan(row["p_value"]) and not row["significant"]


def _grid():
    rows = []
    for ratio, acc in ((0.25, 0.5), (0.5, 0.6), (0.75, 0.7)):
        for seed in range(3):
            rows.append({"model.mim.mask_ratio": ratio, "seed": seed, "m": acc + 0.01 * seed})
    return pd.DataFrame(rows)


def test_reference_ranking_agreement():
    reference = {"ranking": [{"model.mim.mask_ratio": 0.75}, {"model.mim.mask_ratio": 0.25},
                             {"model.mim.mask_ratio": 0.5}, {"model.mim.mask_ratio": 0.9}]}
    table, agreement = S.compare_with_reference(_grid(), reference, "m", "max")
    assert list(table["setting"]) == ["mim.mask_ratio=0.75", "mim.mask_ratio=0.25", "mim.mask_ratio=0.5",
                                      "mim.mask_ratio=0.9"]
    assert list(table["our_rank"][:3]) == [1, 3, 2]
    assert list(table["paper_rank"][:3]) == [1, 2, 3]  # 0.9 never ran: the paper is re-ranked without it
    assert list(table["agrees"]) == [True, False, False, None]
    assert table.loc[0, "mean"] == pytest.approx(0.71) and table.loc[0, "n"] == 3
    # pairs (0.75,0.25) and (0.75,0.5) agree, (0.25,0.5) does not: tau = (2 - 1) / 3
    assert agreement["kendall_tau"] == pytest.approx(1 / 3) and agreement["best_agrees"] and agreement["n"] == 3


def test_reference_values_only_are_ranked_by_value():
    reference = {"values": [{"setting": {"model.mim.mask_ratio": r}, "value": v} for r, v in
                            ((0.25, 70.0), (0.5, 75.0), (0.75, 77.0))]}
    table, agreement = S.compare_with_reference(_grid(), reference, "m", "max")
    assert list(table["paper_value"]) == [70.0, 75.0, 77.0] and list(table["paper_rank"]) == [3, 2, 1]
    assert all(table["agrees"]) and agreement["kendall_tau"] == pytest.approx(1.0)


def test_reference_with_unknown_factor_names_it():
    with pytest.raises(KeyError, match="model.mlm.mask_ratio"):
        S.compare_with_reference(_grid(), {"ranking": [{"model.mlm.mask_ratio": 0.15}]}, "m", "max")


def test_pareto_front():
    points = pd.DataFrame({"cost": [1, 2, 3, 2, float("nan")], "acc": [0.5, 0.7, 0.6, 0.4, 0.9]})
    assert list(S.pareto_front(points, "cost", "acc", "max")) == [True, True, False, False, False]
    # minimising: (1, 0.5) is cheapest, (2, 0.4) lowest; neither beats the other
    assert list(S.pareto_front(points, "cost", "acc", "min")) == [True, False, False, True, False]


def test_state_counts_order():
    trials = pd.DataFrame({"state": ["FAILED", "FINISHED", "PRUNED", "FINISHED"]})
    assert S.state_counts(trials).to_dict("list") == {"state": ["FINISHED", "PRUNED", "FAILED"], "trials": [2, 1, 1]}


def test_zipped_paths_become_one_factor():
    from dashboards.load import join_zipped

    trials = pd.DataFrame({"model.mim.enabled": [True, False], "model.itm.enabled": [True, True], "x.y.lr": [1, 2]})
    joined, factors = join_zipped(trials, ["model.mim.enabled", "model.itm.enabled", "x.y.lr"],
                                  ["model.mim.enabled", "model.itm.enabled"])
    assert factors == ["x.y.lr", "zip: mim.enabled, itm.enabled"]
    assert list(joined[factors[1]]) == ["mim.enabled=True, itm.enabled=True", "mim.enabled=False, itm.enabled=True"]
    assert "model.mim.enabled" in joined  # reference settings still find the single paths


def test_ours_with_paper_rank_keeps_every_setting_and_gives_tied_settings_one_place():
    trials = pd.DataFrame({"a": [1, 1, 2, 2, 3, 3, 4, 4], "seed": [0, 1] * 4,
                           "t/acc": [50.0, 52.0, 40.0, 42.0, 45.0, 47.0, 30.0, 32.0]})
    reference = {"ranking": [{"a": 1}, [{"a": 2}, {"a": 3}]]}  # a = 4: run by us, not ranked by the paper
    ours = S.ours_with_paper_rank(trials, reference, "t/acc", "max").set_index("a")
    assert list(ours.index) == [1, 2, 3, 4] and list(ours["mean"]) == [51.0, 41.0, 46.0, 31.0]
    assert list(ours["paper_rank"].iloc[:3]) == [1, 2, 2] and math.isnan(ours.loc[4, "paper_rank"])


DECISIONS = [  # as decisions.json: ratio 0.25 against the leader 0.75
    {"setting": {"model.mim.mask_ratio": 0.25}, "against": {"model.mim.mask_ratio": 0.75}, "seeds": 3,
     "diff": -2.0, "ci_low": -5.5, "ci_high": 1.5, "verdict": "undecided"},
]


def test_decision_table_keeps_the_verdicts():
    table = S.decision_table(DECISIONS + [{**DECISIONS[0], "ci_low": None, "ci_high": None, "seeds": 1}])
    assert list(table.columns) == ["setting", "vs leader", "seeds", "difference", "ci_low", "ci_high", "verdict"]
    assert table.loc[0, "setting"] == "mim.mask_ratio=0.25" and table.loc[0, "vs leader"] == "mim.mask_ratio=0.75"
    assert table.loc[0, "difference"] == -2.0 and math.isnan(table.loc[1, "ci_low"])


def test_paired_differences_by_seed_hand_computed():
    trials = pd.DataFrame({
        "model.mim.mask_ratio": [0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75],
        "seed": [0, 1, 2, 0, 1, 2, 3],
        "state": ["FINISHED", "FINISHED", "FINISHED", "FINISHED", "FINISHED", "FINISHED", "FINISHED"],
        "acc": [50.0, 47.5, 49.0, 51.0, 50.5, 49.0, 60.0],  # seed 3 has no pair
    })
    diffs = S.paired_differences(trials, DECISIONS, "acc")
    assert list(diffs["seed"]) == [0, 1, 2]
    assert list(diffs["diff"]) == [-1.0, -3.0, 0.0]  # 50 - 51, 47.5 - 50.5, 49 - 49
    assert diffs["diff"].mean() == pytest.approx(-4 / 3)
    assert set(diffs["comparison"]) == {"mim.mask_ratio=0.25 vs mim.mask_ratio=0.75"}


def test_verdicts_name_settings_as_their_runs_with_the_study_aliases():
    aliases = {"model.mim.mask_ratio": "img"}
    table = S.decision_table(DECISIONS, aliases)
    assert (table.loc[0, "setting"], table.loc[0, "vs leader"]) == ("img.25", "img.75")
    trials = pd.DataFrame({"model.mim.mask_ratio": [0.25, 0.75], "seed": [0, 0], "state": ["FINISHED"] * 2,
                           "acc": [50.0, 51.0]})
    assert list(S.paired_differences(trials, DECISIONS, "acc", aliases)["comparison"]) == ["img.25 vs img.75"]


def test_paired_differences_skip_unfinished_trials_and_unknown_paths():
    trials = pd.DataFrame({"model.mim.mask_ratio": [0.25, 0.75], "seed": [0, 0], "state": ["FAILED", "FINISHED"],
                           "acc": [50.0, 51.0]})
    assert S.paired_differences(trials, DECISIONS, "acc").empty
    other = [{**DECISIONS[0], "setting": {"model.mlm.mask_ratio": 0.5}}]
    assert S.paired_differences(trials, other, "acc").empty


def test_setting_labels_name_only_the_factors_that_vary():
    trials = pd.DataFrame({"model.mim.mask_ratio": [0.25, 0.75, 0.75], "model.depth": [2, 2, 2]})
    assert list(S.setting_labels(trials, ["model.mim.mask_ratio", "model.depth"])) == [
        "mim.mask_ratio=0.25", "mim.mask_ratio=0.75", "mim.mask_ratio=0.75"]
    assert list(S.setting_labels(trials.iloc[1:], ["model.mim.mask_ratio"])) == ["all trials", "all trials"]


def test_drawn_trials_go_round_robin_over_settings_within_the_caps():
    trials = pd.DataFrame({"r": [1, 1, 1, 2, 2, 3], "run_id": list("abcdef")})
    assert list(S.drawn_trials(trials, ["r"], per_label=2, cap=4)["run_id"]) == ["a", "d", "f", "b"]
    assert list(S.drawn_trials(trials, ["r"], per_label=1, cap=10)["run_id"]) == ["a", "d", "f"]


def test_pretrain_runs_prefer_the_link_then_the_child_run():
    trials = pd.DataFrame({"run_id": ["t1", "t2", "t3"], "pretrain_run_id": ["p9", None, None]})
    stages = pd.DataFrame({"run_id": ["p1", "f1", "p2"], "parent_run_id": ["t1", "t2", "t2"],
                           "kind": ["pretrain", "finetune", "pretrain"]})
    runs = S.pretrain_runs(trials, stages)
    assert list(runs[:2]) == ["p9", "p2"] and pd.isna(runs.iloc[2])


def test_curves_are_losses_accuracies_and_validation_metrics_logged_at_several_steps():
    assert S.is_curve("pretrain/loss") and S.is_curve("vqa/val_acc") and S.is_curve("vqa/overall_acc")
    assert not S.is_curve("pretrain/lr") and not S.is_curve("pretrain/samples_per_second")
    history = pd.DataFrame({"key": ["a/loss", "a/loss", "a/val_acc"], "step": [0, 10, 10]})
    assert S.over_steps(history, ["a/loss", "a/val_acc"]) == ["a/loss"]


def test_cost_points_average_per_setting_and_mark_the_front():
    finished = pd.DataFrame({"r": [1, 1, 2, 3], "acc": [50.0, 60.0, 70.0, 52.0],
                             "cost/flops": [10.0, 30.0, 40.0, 30.0]})
    points = S.cost_points(finished, ["r"], "acc", ["cost/flops"], "max")
    assert list(points["mean"]) == [55.0, 70.0, 52.0] and list(points["cost/flops"]) == [20.0, 40.0, 30.0]
    assert list(points["label"]) == ["r=1", "r=2", "r=3"]
    assert list(points["front_cost/flops"]) == [True, True, False]  # r=3 costs more than r=1 for less


def test_significance_table_shows_differences_in_points_and_flags_the_best():
    tests = pd.DataFrame({"model.mim.mask_ratio": [0.75, 0.25], "mean": [71.25, 68.5], "diff": [0.0, -2.75],
                          "n_pairs": [3, 3], "test": ["-", "paired t"], "p_value": [float("nan"), 0.0321],
                          "is_best": [True, False], "significant": [False, True]})
    shown = S.significance_table(tests, ["model.mim.mask_ratio"], "%")
    assert list(shown.columns) == ["level", "mean (%)", "difference vs best (points)", "pairs", "test", "p",
                                   "significant?"]
    assert list(shown["level"]) == ["mim.mask_ratio=0.75", "mim.mask_ratio=0.25"]
    assert list(shown["p"]) == ["–", "0.032"] and list(shown["significant?"]) == ["best", "yes"]


def test_failure_table_lists_failed_and_killed_trials_with_their_setting():
    trials = pd.DataFrame({"trial_id": ["a", "b", "c"], "r": [1, 2, 3], "seed": [0, 0, 1],
                           "state": ["FINISHED", "FAILED", "KILLED"], "error": ["", "boom", ""],
                           "run_id": ["r1", "r2", "r3"]})
    shown = S.failure_table(trials, ["r"])
    assert list(shown["trial"]) == ["b", "c"] and list(shown["setting"]) == ["r=2", "r=3"]
    assert list(shown["error"]) == ["boom", "–"]
