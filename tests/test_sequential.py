"""The adaptive-seed procedure on synthetic outcomes (no training): error rate, power, seeds spent."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ablations.sequential import (BETTER, EQUIVALENT, UNDECIDED, VERDICTS, WORSE, Race, SeedPlan, boundaries,
                                  compare, paired_interval, verdict_codes)

PLAN = SeedPlan(start=2, max=8, min_effect=1.0)  # the example
SPREAD = 2.0  # sd of the paired differences, in min_effects: about the laptop profile's seed noise


def pair_races(delta: float, sd: float, plan: SeedPlan, runs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Races of two settings, vectorised: setting 1 - setting 0 has mean `delta`. Both get one more
    seed per round until the comparison is decided or has `max` seeds (what `Race` does with two
    settings). -> (verdict codes of setting 1 against setting 0, seeds per setting at the end)."""
    rng = np.random.default_rng(seed)
    diffs = rng.normal(delta, sd, (runs, plan.max))
    verdict = np.zeros(runs, dtype=int)
    seeds = np.full(runs, plan.max)
    open_ = np.ones(runs, dtype=bool)
    for n in range(plan.start, plan.max + 1):
        _, low, high = paired_interval(diffs[:, :n], plan)
        code = verdict_codes(low, high, "max", plan.min_effect)
        decided = open_ & (code != 0)
        verdict[decided], seeds[decided] = code[decided], n
        open_ &= ~decided
    return verdict, seeds


def fixed_power(delta: float, sd: float, n: int, alpha: float) -> float:
    """Power of a fixed design: the paired t-test at n seeds detects `delta` in the right direction."""
    nc = delta / sd * math.sqrt(n)
    return float(stats.nct.sf(stats.t.ppf(1 - alpha / 2, n - 1), n - 1, nc))


def test_no_difference_is_called_at_most_alpha_of_the_time():
    verdict, _ = pair_races(0.0, SPREAD, PLAN, runs=200_000, seed=1)
    false_rate = np.isin(verdict, [1, 2]).mean()  # better or worse, while both are the same
    assert false_rate <= PLAN.alpha
    assert false_rate > PLAN.alpha / 2  # and not bought by never deciding anything


def test_null_rate_holds_for_other_plans():
    for plan, sd in [(SeedPlan(3, 6, 0.5, alpha=0.1), 1.0), (SeedPlan(2, 12, 1.0), 3.0)]:
        verdict, _ = pair_races(0.0, sd, plan, runs=100_000, seed=2)
        assert np.isin(verdict, [1, 2]).mean() <= plan.alpha


def test_a_clear_difference_is_found_with_fewer_seeds_than_a_fixed_design_of_equal_power():
    delta = 3 * PLAN.min_effect
    verdict, seeds = pair_races(delta, SPREAD, PLAN, runs=50_000, seed=3)
    power = (verdict == 1).mean()  # setting 1 called better
    assert (verdict == 2).mean() < 0.001  # never the wrong way round
    equal_power = next(n for n in range(2, 100) if fixed_power(delta, SPREAD, n, PLAN.alpha) >= power)
    assert power > 0.85
    assert seeds.mean() < equal_power  # about 6.2 seeds on average against 7


def test_race_matches_the_vectorised_simulation():
    """The simulation above is the procedure: `Race` on the same outcomes gives the same verdicts and seeds."""
    rng = np.random.default_rng(4)
    for delta in (0.0, 3.0):
        diffs = rng.normal(delta, SPREAD, (150, PLAN.max))
        base = rng.normal(50, 3, (150, PLAN.max))
        for run in range(150):
            race = Race(2, PLAN, "max")
            while True:
                while (job := race.take()) is not None:
                    setting, seed = job
                    race.record(setting, seed, base[run, seed] + (diffs[run, seed] if setting else 0.0))
                if not race.advance():
                    break
            lead, [comparison] = race.comparisons()
            code, seeds = pair_races_one(diffs[run])
            verdict = VERDICTS[code]
            if lead == 0:  # the comparison is setting 1 against setting 0: as the simulation's
                assert comparison.verdict == verdict
            else:  # setting 0 against the leader, setting 1: the opposite direction
                assert comparison.verdict == {BETTER: WORSE, WORSE: BETTER}.get(verdict, verdict)
            assert race.target == [seeds, seeds]


def pair_races_one(diffs: np.ndarray) -> tuple[int, int]:
    for n in range(PLAN.start, PLAN.max + 1):
        _, low, high = paired_interval(diffs[:n], PLAN)
        code = int(verdict_codes(low, high, "max", PLAN.min_effect))
        if code:
            return code, n
    return 0, PLAN.max


def test_race_keeps_every_setting_within_start_and_max():
    rng = np.random.default_rng(5)
    plan = SeedPlan(start=2, max=5, min_effect=1.0)
    for _ in range(100):
        means = rng.normal(50, 2, 4)
        race = Race(4, plan, "max")
        rounds = 1
        while True:
            while (job := race.take()) is not None:
                setting, seed = job
                race.record(setting, seed, means[setting] + rng.normal(0, 2))
            if not race.advance():
                break
            rounds += 1
        assert all(plan.start <= len(t) <= plan.max for t in race.tried)
        assert rounds <= (plan.max - plan.start) * 4 + 1  # each round raises some setting's seeds
        assert race.stop_reason in ("decided", "max")
        _, comparisons = race.comparisons()
        if race.stop_reason == "decided":
            assert all(c.verdict != UNDECIDED for c in comparisons)


def test_budget_stops_before_a_round_that_does_not_fit():
    race = Race(3, SeedPlan(2, 6, 0.1), "max")
    for setting, values in enumerate([[50, 52], [51, 50], [49, 53]]):
        for seed, value in enumerate(values):
            race.record(setting, seed, value)
    asked = []
    assert not race.advance(lambda n: asked.append(n) or False)
    assert race.stop_reason == "budget" and asked == [3]  # the leader and two undecided settings
    assert race.target == [2, 2, 2]


def test_resume_continues_the_round_it_stopped_in():
    plan = SeedPlan(2, 6, 1.0)
    race = Race(2, plan, "max")
    for seed, (a, b) in enumerate([(50, 51), (52, 50), (49, 51)]):  # round 2 had started: seed 2 of both
        race.resume(0, seed, a)
        if seed < 2:
            race.resume(1, seed, b)
    assert race.target == [3, 2]
    assert race.todo() == []  # setting 1's seed 2 was not tried: its round target is still 2
    assert race.advance()  # undecided: one more common seed
    assert race.todo() == [(1, 2)]


def test_verdicts_follow_the_metric_direction_and_min_effect():
    codes = verdict_codes([0.5, -3, -0.4, -2], [2, -1, 0.4, 2], "max", 1.0)
    assert [VERDICTS[c] for c in codes] == [BETTER, WORSE, EQUIVALENT, UNDECIDED]
    codes = verdict_codes([0.5, -3], [2, -1], "min", None)
    assert [VERDICTS[c] for c in codes] == [WORSE, BETTER]


def test_compare_pairs_by_seed_against_the_leader():
    values = [{0: 50.0, 1: 52.0, 2: 51.0}, {0: 47.0, 1: 48.0}, {}]
    lead, comparisons = compare(values, "max", SeedPlan(2, 2))
    assert lead == 0
    first, empty = comparisons
    assert first.seeds == 2 and first.differences == {0: -3.0, 1: -4.0} and first.diff == pytest.approx(-3.5)
    half = stats.t.ppf(0.975, 1) * math.sqrt(0.5) / math.sqrt(2)  # sd of (-3, -4) is sqrt(0.5)
    assert (first.ci_low, first.ci_high) == pytest.approx((-3.5 - half, -3.5 + half))
    assert empty.seeds == 0 and empty.verdict == UNDECIDED and empty.diff is None


def test_boundaries_are_fixed_and_no_look_before_start():
    table = boundaries(3, 8, 0.05)
    assert table == boundaries.__wrapped__(3, 8, 0.05)  # the same numbers every time
    assert all(math.isinf(c) for c in table[:3])
    assert table[8] > stats.t.ppf(0.975, 7)  # the last look pays for the earlier ones
    assert table[4] > table[8]
    assert SeedPlan(4, 4).boundary(4) == pytest.approx(stats.t.ppf(0.975, 3))  # one look: the t-interval


def test_the_budget_estimate_counts_rounds_of_trials_side_by_side():
    from ablations.runner import SeedRace

    seeds = SeedRace(Race(3, PLAN, "max"), {}, durations=[50.0, 70.0], budget_seconds=150.0, slots=2)
    assert seeds.afford(2)  # one round of 2 side by side: 60 s
    assert seeds.afford(4)  # two rounds: 120 s
    assert not seeds.afford(5)  # three rounds: 180 s > 150 s
    assert SeedRace(Race(3, PLAN, "max"), {}, budget_seconds=0.0).afford(9)  # nothing measured yet: no estimate
