"""Adaptive seeds: when a difference between two settings is decided, and where the next seed goes.

Pure functions and one small state machine (`Race`); no Ray, no MLflow. The Tune searcher
(`ablations.seed_search`) and the end-of-study verdicts (`ablations.runner`) use them.

The comparison. Two settings run the same seeds, and a seed fixes the data order, the
initialisation of shared parts, the fine-tuning head and the mask streams (common random
numbers), so they are compared by the paired differences d_i = y_setting(i) - y_against(i)
over their common seeds. With n of them, the interval is

    mean(d) +- c_n * sd(d) / sqrt(n)

The procedure: group-sequential intervals with alpha spending. A race looks at a pair after
every round, at n = start, start+1, ..., max seeds. Under normal differences with unknown
variance the paired t statistics T_start..T_max have a joint law free of the variance, so the
boundaries c_n are computed once by simulation: look n may be the first to exceed its boundary
with probability alpha * f(n)^2 - alpha * f(n-1)^2 (the power-family spending function with
rho = 2, between Pocock's and O'Brien-Fleming's; f(n) = (n - 1) / (max - 1), the information
of n paired differences with unknown variance). The intervals then hold at all looks at once
with probability >= 1 - alpha, whatever the race does between looks (stop, add seeds, change
leader): each comparison's error rate stays at alpha over repeated looks. The simulation
targets alpha minus three of its Monte Carlo standard errors, so calibration noise cannot
push the rate above alpha. A design with one look (start == max, or fixed seeds) is the plain
paired t-interval.

Verdicts (from the setting's side, in the metric's direction): `better` / `worse` when the
interval excludes 0, `equivalent` when it lies inside +-min_effect, `undecided` otherwise.
The rate is per comparison: with k settings a race makes k - 1 comparisons.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

DEFAULT_ALPHA = 0.05
SPENDING_RHO = 2.0  # alpha spent by look n: alpha * f(n)^rho (Kim & DeMets' power family)
CALIBRATION_RUNS = 200_000  # simulated null races per boundary set
CALIBRATION_SEED = 2209_07098  # fixed, so boundaries and verdicts repeat exactly

BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
VERDICTS = (UNDECIDED, BETTER, WORSE, EQUIVALENT)  # the codes of `verdict_codes`, in order


@dataclass(frozen=True)
class SeedPlan:
    """How many seeds a setting gets and what difference matters.
    Fixed seeds are a plan with one look (start == max) and no min_effect."""

    start: int  # seeds every setting runs first (seeds 0..start-1)
    max: int  # the most seeds any setting gets
    min_effect: float | None = None  # smallest difference worth telling apart, in metric units
    alpha: float = DEFAULT_ALPHA

    @property
    def one_look(self) -> bool:
        return self.start == self.max

    def boundary(self, n: int) -> float:
        """c_n: the interval's half-width in standard errors at n common seeds (inf: no decision)."""
        if n < 2:
            return math.inf
        if self.one_look:  # a single look, wherever it falls (a failed trial leaves fewer seeds)
            return float(stats.t.ppf(1 - self.alpha / 2, n - 1))
        table = boundaries(self.start, self.max, self.alpha)
        return table[n] if n < len(table) else math.inf


@functools.lru_cache(maxsize=64)
def boundaries(start: int, max_seeds: int, alpha: float) -> tuple[float, ...]:
    """c_n for n = 0..max_seeds (inf where there is no look): group-sequential boundaries of the
    paired t statistic, calibrated on simulated null races (see the module docstring)."""
    c = np.full(max_seeds + 1, np.inf)
    runs = CALIBRATION_RUNS
    target = alpha - 3 * math.sqrt(alpha * (1 - alpha) / runs)
    first = max(start, 2)

    def spent(n: int) -> float:  # alpha spent by look n
        return target * ((n - 1) / (max_seeds - 1)) ** SPENDING_RHO if n < max_seeds else target

    rng = np.random.default_rng(CALIBRATION_SEED)
    total, squares = np.zeros(runs), np.zeros(runs)
    alive = np.ones(runs, dtype=bool)  # runs that have not crossed a boundary yet
    previous = 0.0
    for n in range(1, max_seeds + 1):
        z = rng.standard_normal(runs)
        total += z
        squares += z * z
        if n < first:
            continue
        mean = total / n
        sd = np.sqrt(np.maximum(squares - n * mean * mean, 0.0) / (n - 1))
        t = np.abs(mean) / (sd / math.sqrt(n))
        k = round((spent(n) - previous) * runs)  # runs allowed to cross first here
        previous = spent(n)
        if k <= 0:
            continue
        candidates = np.sort(t[alive])[::-1]
        c[n] = float(candidates[k - 1] + candidates[k]) / 2 if k < len(candidates) else float(candidates[-1])
        alive &= t <= c[n]
    return tuple(float(x) for x in c)


# --------------------------------------------------------------------------- intervals and verdicts


def paired_interval(diffs: np.ndarray, plan: SeedPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """diffs [..., n] (paired differences over n common seeds) -> (mean, low, high), each [...].
    Vectorised over the leading axes, so a simulation scores many races at once."""
    diffs = np.asarray(diffs, dtype=float)
    n = diffs.shape[-1]
    mean = diffs.mean(axis=-1)
    c = plan.boundary(n)
    if not math.isfinite(c):
        return mean, np.full_like(mean, -np.inf), np.full_like(mean, np.inf)
    half = c * diffs.std(axis=-1, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def verdict_codes(low, high, mode: str, min_effect: float | None) -> np.ndarray:
    """Indexes into VERDICTS: better / worse when [low, high] excludes 0 (in the metric's
    direction), equivalent when it lies inside +-min_effect, undecided otherwise."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    above, below = low > 0, high < 0
    better, worse = (above, below) if mode == "max" else (below, above)
    equivalent = (low >= -min_effect) & (high <= min_effect) if min_effect is not None else np.zeros_like(above)
    return np.select([better, worse, equivalent], [1, 2, 3], default=0)


@dataclass(frozen=True)
class Comparison:
    """One setting against the leader over their common seeds (diff = setting - against)."""

    setting: int  # index of the setting
    against: int  # index of the leader
    seeds: int  # common seeds with a value on both sides
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: str
    differences: dict[int, float] = field(default_factory=dict)  # seed -> paired difference


def leader(values: Sequence[Mapping[int, float]], mode: str) -> int | None:
    """The setting with the best mean over its own seeds (the first one on a tie); None without values."""
    means = [(sum(v.values()) / len(v), i) for i, v in enumerate(values) if v]
    if not means:
        return None
    best = max(means, key=lambda m: m[0]) if mode == "max" else min(means, key=lambda m: m[0])
    return best[1]


def compare(values: Sequence[Mapping[int, float]], mode: str, plan: SeedPlan) -> tuple[int | None, list[Comparison]]:
    """Every setting against the leader. values[i]: seed -> metric value of setting i."""
    lead = leader(values, mode)
    if lead is None:
        return None, []
    comparisons = []
    for i, own in enumerate(values):
        if i == lead:
            continue
        seeds = sorted(set(own) & set(values[lead]))
        differences = {s: own[s] - values[lead][s] for s in seeds}
        if not seeds:
            comparisons.append(Comparison(i, lead, 0, None, None, None, UNDECIDED))
            continue
        mean, low, high = paired_interval(np.array(list(differences.values())), plan)
        code = int(verdict_codes(low, high, mode, plan.min_effect))
        finite = math.isfinite(float(low))
        comparisons.append(Comparison(i, lead, len(seeds), float(mean), float(low) if finite else None,
                                      float(high) if finite else None, VERDICTS[code], differences))
    return lead, comparisons


# --------------------------------------------------------------------------- the race


class Race:
    """Where seeds go. Every setting first runs seeds 0..start-1 (a round). After each round, the
    leader is compared with every other setting; each undecided comparison whose settings have
    fewer than `max` seeds gets one more common seed (one more for the leader and for each
    undecided setting). The race ends when every comparison is decided, the undecided ones
    reached `max`, or the next round does not fit the budget.

        race.take() -> (setting, seed) to run, or None      race.record(setting, seed, value or None)
        race.advance(afford) once nothing is open: plans the next round; False when the race is over
    """

    def __init__(self, n_settings: int, plan: SeedPlan, mode: str):
        self.plan, self.mode = plan, mode
        self.values: list[dict[int, float]] = [{} for _ in range(n_settings)]
        self.tried: list[set[int]] = [set() for _ in range(n_settings)]  # ended: with a value or not
        self.running: set[tuple[int, int]] = set()
        self.target = [plan.start] * n_settings  # seeds 0..target-1 make the current round
        self.stop_reason: str | None = None  # "decided" | "max" | "budget" once over

    def resume(self, setting: int, seed: int, value: float | None) -> None:
        """A trial that ended in an earlier invocation: the round it belonged to is the current one."""
        self.record(setting, seed, value)
        self.target[setting] = min(self.plan.max, max(self.target[setting], seed + 1))

    def record(self, setting: int, seed: int, value: float | None) -> None:
        """A trial ended: its value, or None when it failed or was stopped early."""
        self.running.discard((setting, seed))
        self.tried[setting].add(seed)
        if value is not None and math.isfinite(value):
            self.values[setting][seed] = float(value)

    def todo(self) -> list[tuple[int, int]]:
        """Trials of the current round not started yet, setting by setting."""
        return [(i, seed) for i, target in enumerate(self.target) for seed in range(target)
                if seed not in self.tried[i] and (i, seed) not in self.running]

    def take(self) -> tuple[int, int] | None:
        todo = self.todo()
        if not todo:
            return None
        self.running.add(todo[0])
        return todo[0]

    @property
    def round_open(self) -> bool:
        return bool(self.running) or bool(self.todo())

    def comparisons(self) -> tuple[int | None, list[Comparison]]:
        return compare(self.values, self.mode, self.plan)

    def next_round(self) -> dict[int, int]:
        """The targets the next round raises: {setting: seeds}; empty when nothing is left to decide."""
        lead, comparisons = self.comparisons()
        raised: dict[int, int] = {}
        for c in comparisons:
            if c.verdict != UNDECIDED:
                continue
            common = min(self.target[lead], self.target[c.setting])
            if common >= self.plan.max:
                continue
            for s in (lead, c.setting):
                raised[s] = max(raised.get(s, self.target[s]), common + 1)
        return {s: n for s, n in raised.items() if n > self.target[s]}

    def advance(self, afford: Callable[[int], bool] | None = None) -> bool:
        """After a round: raise the targets for the next one. `afford(n_trials)` says whether a
        round of that many trials still fits the budget. False (and stop_reason) when over."""
        if self.round_open:
            raise RuntimeError("the current round is still open")
        raised = self.next_round()
        if not raised:
            _, comparisons = self.comparisons()
            self.stop_reason = "max" if any(c.verdict == UNDECIDED for c in comparisons) else "decided"
            return False
        if afford is not None and not afford(sum(n - self.target[s] for s, n in raised.items())):
            self.stop_reason = "budget"
            return False
        for s, n in raised.items():
            self.target[s] = n
        return True
