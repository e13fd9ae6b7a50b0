"""Verdicts on the paper's findings (dashboards.findings) and `ablate findings`, against hand-computed numbers."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from ablate_common.store import open_client
from ablations.cli import main
from dashboards import findings as F
from dashboards.sample_store import write_sample_study

A, B = {"r": 0.75}, {"r": 0.25}


def _trials(better, worse):
    """Seeds 0.. for setting A (`better`) and B (`worse`)."""
    rows = [(0.75, s, v) for s, v in enumerate(better)] + [(0.25, s, v) for s, v in enumerate(worse)]
    return pd.DataFrame(rows, columns=["r", "seed", "t/acc"])


def _one(trials, ranking=(A, B), **kwargs):
    (found,) = F.paper_findings(trials, {"ranking": list(ranking)}, "t/acc", "max", factors=["r"], **kwargs)
    return found


def test_paired_difference_and_its_t_interval():
    # differences 2, 3, 1: mean 2, sd 1, half-width t(0.975, 2) / sqrt(3) = 2.484138 -> [-0.48, 4.48]
    found = _one(_trials([50, 52, 54], [48, 49, 53]))
    assert found.diff == pytest.approx(2.0) and found.pairs == 3 and found.seeds == (3, 3)
    assert (found.ci_low, found.ci_high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-5)
    assert found.verdict is F.Verdict.INCONCLUSIVE and found.claim == "r.75 beats r.25"
    # effect 2, spread 1: n = 5 is the first with n >= ((t(.975, n-1) + t(.8, n-1)) / 2)^2 (n = 4 needs 4.33)
    assert found.settle_seeds == 5


def test_agrees_disagrees_and_the_direction_of_min_metrics():
    assert _one(_trials([50, 52, 54], [45, 46, 48])).verdict is F.Verdict.AGREES  # +5, +6, +6
    assert _one(_trials([45, 46, 48], [50, 52, 54])).verdict is F.Verdict.DISAGREES
    (lower_is_better,) = F.paper_findings(_trials([45, 46, 48], [50, 52, 54]), {"ranking": [A, B]}, "t/acc", "min",
                                          factors=["r"])
    assert lower_is_better.verdict is F.Verdict.AGREES and lower_is_better.diff == pytest.approx(17 / 3)


def test_ties_smoke_and_missing_settings_make_no_verdict():
    trials = _trials([50, 52, 54], [45, 46, 48])
    assert _one(trials, ranking=([A, B],)).verdict is F.Verdict.TIE  # the paper ranks the two equal
    smoke = _one(trials, profile="smoke")
    assert smoke.verdict is F.Verdict.NOT_JUDGED and smoke.note == "smoke profile" and smoke.diff > 0
    missing = _one(trials, ranking=(A, {"r": 0.5}))
    assert missing.verdict is F.Verdict.NOT_JUDGED and missing.note == "no finished trials of r.5"
    one_seed = _one(_trials([50], [45]))
    assert one_seed.verdict is F.Verdict.INCONCLUSIVE and math.isnan(one_seed.ci_low) and one_seed.settle_seeds is None


def test_every_pair_of_a_ranking_is_a_finding_and_groups_tie():
    a, b, c, d = ({"r": v} for v in (1, 2, 3, 4))
    pairs = F.claimed_pairs({"ranking": [a, [b, c], d]}, "max")
    assert pairs == [(a, b, False), (a, c, False), (a, d, False), (b, c, True), (b, d, False), (c, d, False)]
    by_values = F.claimed_pairs({"values": [{"setting": a, "value": 70}, {"setting": b, "value": 77}]}, "max")
    assert by_values == [(b, a, False)]


def test_seeds_to_settle_matches_the_t_power_formula():
    # effect = spread: n = 10 (t: (2.262 + 0.883)^2 = 9.89 <= 10; at 9, (2.306 + 0.889)^2 = 10.2 > 9)
    assert F.seeds_to_settle(1.0, 1.0) == 10
    assert F.seeds_to_settle(0.0, 1.0) is None and F.seeds_to_settle(1e-4, 1.0) is None  # more than MAX_SEEDS


def test_a_decision_from_an_adaptive_race_wins_over_the_trial_metrics():
    trials = _trials([50, 52, 54], [45, 46, 48])
    # the race compared B (setting) against A (against): B - A = -5.5 [-9, -2], "worse" -> the paper's order holds
    race = [{"setting": {"r": 0.25}, "against": "r=0.75", "seeds": 3, "diff": -5.5, "ci_low": -9.0, "ci_high": -2.0,
             "verdict": "worse"}]
    found = _one(trials, decisions=race)
    assert found.source == "decisions.json" and found.verdict is F.Verdict.AGREES
    assert (found.diff, found.ci_low, found.ci_high) == (5.5, 2.0, 9.0)
    race[0]["verdict"] = "equivalent"
    assert _one(trials, decisions=race).verdict is F.Verdict.DISAGREES
    race[0]["verdict"] = "undecided"
    assert _one(trials, decisions=race).verdict is F.Verdict.INCONCLUSIVE
    race[0].update(ci_low=None, ci_high=None)  # too few seeds for an interval: decisions.json says null
    assert math.isnan(_one(trials, decisions=race).ci_low)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sample study whose logged spec ranks its four settings so that every verdict occurs, and
    whose study run logged a decisions.json (an adaptive race)."""
    root = tmp_path_factory.mktemp("findings")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    factors = {"model.mim.mask_ratio": [0.25, 0.75], "model.mlm.mask_ratio": [0.15, 0.5]}
    spec = write_sample_study(uri, "ratios", factors, seeds=(0, 1, 2), failed=0, images=False, curve_steps=2)
    best, low = {"model.mim.mask_ratio": 0.75, "model.mlm.mask_ratio": 0.15}, {"model.mim.mask_ratio": 0.75,
                                                                             "model.mlm.mask_ratio": 0.5}
    tied = [{"model.mim.mask_ratio": 0.25, "model.mlm.mask_ratio": 0.5},
            {"model.mim.mask_ratio": 0.25, "model.mlm.mask_ratio": 0.15}]
    spec.update(profile="laptop", reference={"source": "test ranking", "ranking": [best, tied, low]})
    client = open_client(uri)
    experiment = client.get_experiment_by_name("ratios")
    (study_run,) = client.search_runs([experiment.experiment_id], "tags.`ablate.kind` = 'study'")
    client.log_text(study_run.info.run_id, yaml.safe_dump(spec), "spec.yaml")
    race = [{"setting": low, "against": best, "seeds": 3, "diff": -10.0, "ci_low": -30.0, "ci_high": 10.0,
             "verdict": "undecided"}]
    client.log_text(study_run.info.run_id, json.dumps(race), "decisions.json")
    return root


def test_ablate_findings_prints_and_writes_the_table(store, tmp_path, capsys):
    out = tmp_path / "findings.md"
    assert main(["findings", "ratios", "--workdir", str(store), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ratios: synth_vqa/overall_acc (%), profile laptop, 12 finished trials" in printed
    assert f"wrote {out}" in printed
    lines = out.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| paper's finding"))
    assert lines[header] == "| " + " | ".join(F.COLUMNS) + " |"
    rows = [line.strip("| ").split(" | ") for line in lines[header + 2:] if line.startswith("| ")]
    verdicts = [row[3].split(" (")[0] for row in rows]
    # img.75-txt.15 beats img.25-txt.5 / img.25-txt.15 (+30.5 / +20 points), beats img.75-txt.5 (the
    # race: undecided); the tied pair; img.25-txt.5 and img.25-txt.15 beat img.75-txt.5 (-20 / -9.5)
    assert verdicts == ["agrees", "agrees", "inconclusive", "tie", "disagrees", "disagrees"]
    assert rows[0][0] == "img.75-txt.15 beats img.25-txt.5" and rows[3][0].endswith("ties img.25-txt.15")
    assert rows[0][2] == "3 / 3" and rows[2][4].startswith("~") and rows[2][1] == "+10.0 [-10.0, +30.0] points"
    assert all(row[4] == "-" for i, row in enumerate(rows) if i != 2)


def test_ablate_findings_without_a_name_finds_the_studies_with_a_reference(store, capsys):
    assert main(["findings", "--workdir", str(store)]) == 0
    assert "ratios:" in capsys.readouterr().out
    assert main(["findings", "nope", "--workdir", str(store)]) == 2
