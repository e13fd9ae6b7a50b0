"""What a study decided: each setting against the leader, paired by seed (ablations.sequential).

Printed at the end of `ablate run` and logged on the study run as `decisions.json`, a list of

    {"setting": {path: value}, "against": {path: value}, "seeds": n, "diff": d,
     "ci_low": low, "ci_high": high, "verdict": "better" | "worse" | "equivalent" | "undecided"}

diff = setting - against (the leader) in the headline metric's units, averaged over the common
seeds; the interval is null when there are too few of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ablate_common.naming import factor_aliases, setting_name
from ablate_common.tables import render_table
from ablations import tracking
from ablations.sequential import compare
from ablations.spec import StudySpec
from ablations.study import Trial, format_value, short_path

DECISIONS = "decisions.json"
STOP_REASONS = {
    "decided": "every comparison is decided",
    "max": "the undecided comparisons reached the most seeds (seeds.max)",
    "budget": "the next round would not fit --budget",
}


@dataclass(frozen=True)
class Decision:
    setting: dict[str, Any]
    against: dict[str, Any]
    seeds: int
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: str
    differences: dict[int, float] = field(default_factory=dict, compare=False)  # seed -> paired difference

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("differences")
        return data


def setting_key(setting: Mapping[str, Any]) -> str:
    return json.dumps(dict(setting), sort_keys=True, default=str)


def study_values(spec: StudySpec, trials: Sequence[Trial], runs: Mapping[str, Any]) -> list[dict[int, float]]:
    """Per setting (spec.combinations() order): seed -> the headline metric of its finished trial.
    `runs`: trial id -> its latest MLflow trial run (tracking.latest_trial_runs)."""
    index = {setting_key(combo): i for i, combo in enumerate(spec.combinations())}
    values: list[dict[int, float]] = [{} for _ in index]
    for trial in trials:
        run = runs.get(trial.trial_id)
        if run is None or run.info.status != "FINISHED" or run.data.tags.get(tracking.PRUNED) == "true":
            continue
        value = run.data.metrics.get(spec.metric.name)
        if value is not None and math.isfinite(value):
            values[index[setting_key(trial.factors)]][trial.seed] = float(value)
    return values


def decide(spec: StudySpec, values: Sequence[Mapping[int, float]]) -> list[Decision]:
    """Every setting against the leader, with the study's seed plan (fixed seeds: one look)."""
    combos = spec.combinations()
    _, comparisons = compare(values, spec.metric.mode, spec.seed_plan())
    return [Decision(combos[c.setting], combos[c.against], c.seeds, c.diff, c.ci_low, c.ci_high, c.verdict,
                     c.differences) for c in comparisons]


def decisions_json(decisions: Sequence[Decision]) -> str:
    return json.dumps([d.to_json() for d in decisions], indent=2)


def label(setting: Mapping[str, Any]) -> str:
    return " ".join(f"{short_path(p)}={format_value(v)}" for p, v in setting.items()) or "(one setting)"


def verdict_table(spec: StudySpec, decisions: Sequence[Decision], stop_reason: str | None = None) -> str:
    """The table `ablate run` ends with: setting, vs leader, seeds, difference, interval, verdict."""
    plan = spec.seed_plan()
    if not decisions:
        return f"Verdicts on {spec.metric.name}: nothing to compare (one setting, or no finished trials)."
    level = f"{100 * (1 - plan.alpha):g}%"
    aliases = factor_aliases(spec.factor_paths, spec.alias)  # settings named as their runs are
    rows = [[setting_name(d.setting, aliases) or "(one setting)", setting_name(d.against, aliases), str(d.seeds),
             "-" if d.diff is None else f"{d.diff:+.2f}",
             "-" if d.ci_low is None else f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}]", d.verdict] for d in decisions]
    header = ["setting", "vs leader", "seeds", "difference", f"interval ({level})", "verdict"]
    equivalence = f"; equivalent: inside +-{plan.min_effect:g}" if plan.min_effect is not None else ""
    looks = "over every look of the race" if not plan.one_look else "one look (fixed seeds)"
    legend = (f"difference = setting - leader; better / worse: the interval excludes 0{equivalence}; "
              f"intervals hold {looks}, error rate {plan.alpha:g} per comparison")
    lines = [f"Verdicts on {spec.metric.name} ({spec.metric.mode}), each setting against the leader, paired by seed:",
             render_table(header, rows), legend]
    if stop_reason:
        lines.append(f"the race stopped: {STOP_REASONS.get(stop_reason, stop_reason)}")
    return "\n".join(lines)


def values_from_tags(spec: StudySpec, runs: Mapping[str, Any]) -> tuple[list[dict[int, float]], list[float]]:
    """Like `study_values`, matched by the runs' factor and seed tags rather than trial ids, so a
    pilot run with other settings (fewer steps, another profile) measures this study's spread.
    Also returns the wall seconds of each finished trial run."""
    combos = spec.combinations()
    index = {tuple(tracking.tag_value(c[p]) for p in spec.factor_paths): i for i, c in enumerate(combos)}
    values: list[dict[int, float]] = [{} for _ in combos]
    seconds = []
    for run in runs.values():
        tags = run.data.tags
        if run.info.status != "FINISHED" or tags.get(tracking.PRUNED) == "true" or tracking.SEED not in tags:
            continue
        key = tuple(tags.get(tracking.FACTOR_PREFIX + p) for p in spec.factor_paths)
        value = run.data.metrics.get(spec.metric.name)
        if key in index and value is not None and math.isfinite(value):
            values[index[key]][int(tags[tracking.SEED])] = float(value)
            if run.info.end_time and run.info.start_time:
                seconds.append((run.info.end_time - run.info.start_time) / 1000)
    return values, seconds
