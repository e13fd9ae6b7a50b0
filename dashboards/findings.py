"""Our verdict on each of the paper's findings: pure functions of a study's trials (no MLflow, no Plotly).

A study's `reference` block ranks the paper's settings (best first; a nested list is a group the
paper ranks equal). Every pair of settings the paper ranks apart is a finding, "A beats B";
a pair it ranks equal is a tie. Our result for a finding is the paired difference A - B on the
headline metric over the seeds both settings ran (oriented so that a positive number means the
paper's order holds), with its 95% t-interval, or, when the study decided its seeds adaptively,
the interval it logged in `decisions.json` (a sequential interval, valid at the number of
seeds the race stopped at). The verdict:

    agrees        the interval lies above 0
    disagrees     the interval lies below 0, or the race found the two equivalent
    inconclusive  the interval contains 0 (with the seeds a power estimate says would settle it)
    tie           the paper ranks the two equal: nothing to agree with
    not judged    a smoke-profile study (its numbers mean nothing) or a setting with no results

`ablate findings` prints these; the study dashboard opens with the same table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import pandas as pd
from scipy import stats

from ablate_common.naming import factor_aliases, setting_name
from dashboards.summaries import CONFIDENCE, at_setting, same_value

POWER = 0.80
MAX_SEEDS = 1000  # beyond this, a power estimate says "more than 1000": the difference is ~0
SMOKE_NOTE = "smoke profile"


class Verdict(str, Enum):
    AGREES = "agrees"
    DISAGREES = "disagrees"
    INCONCLUSIVE = "inconclusive"
    TIE = "tie"
    NOT_JUDGED = "not judged"


@dataclass(frozen=True)
class Finding:
    """One paper finding ("better beats worse", or a tie) and what our trials say about it."""

    better: dict  # the setting the paper ranks higher (for a tie: the first listed)
    worse: dict
    claim: str  # "img.75-txt.15 beats img.25-txt.5"
    diff: float  # mean paired difference better - worse, signed so + means the paper's order (metric units)
    ci_low: float
    ci_high: float
    pairs: int  # seeds both settings finished (pairs of trials)
    seeds: tuple[int, int]  # finished trials of better, of worse
    verdict: Verdict
    settle_seeds: int | None  # inconclusive: paired seeds the power estimate needs (None: unknown / > MAX_SEEDS)
    source: str  # "paired t" or "decisions.json"
    note: str = ""


def ranked_groups(reference: Mapping) -> list[list[dict]]:
    """The reference's ranking as groups of settings, best group first (an entry that is a list
    is a group the paper ranks equal)."""
    return [[dict(s) for s in entry] if isinstance(entry, list) else [dict(entry)]
            for entry in reference.get("ranking") or []]


def claimed_pairs(reference: Mapping, mode: str) -> list[tuple[dict, dict, bool]]:
    """(better, worse, tied) for every pair of the paper's settings; from `ranking`, else from `values`."""
    groups = ranked_groups(reference)
    if not groups and reference.get("values"):
        entries = sorted(reference["values"], key=lambda v: float(v["value"]), reverse=mode == "max")
        groups = []
        for entry in entries:  # equal paper values share a group
            if groups and math.isclose(float(entry["value"]), groups[-1][0][1]):
                groups[-1].append((dict(entry["setting"]), float(entry["value"])))
            else:
                groups.append([(dict(entry["setting"]), float(entry["value"]))])
        groups = [[s for s, _ in g] for g in groups]
    pairs = []
    for i, group in enumerate(groups):
        pairs += [(a, b, True) for k, a in enumerate(group) for b in group[k + 1:]]
        pairs += [(a, b, False) for lower in groups[i + 1:] for a in group for b in lower]
    return pairs


def paired_differences(trials: pd.DataFrame, better: Mapping, worse: Mapping, metric: str, mode: str,
                       factors: Sequence[str]) -> np.ndarray:
    """better - worse per pair of finished trials that agree on the seed and on the factors neither
    setting fixes; signed so + means `better` is better under `mode`."""
    pair_on = ["seed"] + [f for f in factors if f not in better and f not in worse and f in trials]
    a = at_setting(trials, better)[[*pair_on, metric]].dropna()
    b = at_setting(trials, worse)[[*pair_on, metric]].dropna()
    merged = a.merge(b, on=pair_on, suffixes=("_a", "_b"))
    diff = (merged[f"{metric}_a"] - merged[f"{metric}_b"]).to_numpy(float)
    return diff if mode == "max" else -diff


def t_interval(diffs: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and two-sided t-interval of paired differences; (mean, nan, nan) below 2 pairs.
    [1, 2, 3] -> (2, 2 - 2.484, 2 + 2.484)."""
    n = len(diffs)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(np.mean(diffs))
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(diffs, ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def seeds_to_settle(effect: float, spread: float, power: float = POWER, confidence: float = CONFIDENCE) -> int | None:
    """Paired seeds for a two-sided paired t-test at `confidence` to detect a true mean difference
    `effect` with `power`, given the paired differences' standard deviation `spread`: the smallest
    n >= 2 with n >= ((t_{1-a/2, n-1} + t_{power, n-1}) * spread / effect)^2. None when the effect is
    ~0 or the answer exceeds MAX_SEEDS. effect 1, spread 1 -> 10 (the normal approximation says 8)."""
    if not (math.isfinite(effect) and math.isfinite(spread)) or effect == 0:
        return None
    ratio = (spread / abs(effect)) ** 2
    for n in range(2, MAX_SEEDS + 1):
        z = stats.t.ppf(0.5 + confidence / 2, n - 1) + stats.t.ppf(power, n - 1)
        if n >= z * z * ratio:
            return n
    return None


def verdict_of(low: float, high: float) -> Verdict:
    if math.isnan(low) or math.isnan(high):
        return Verdict.INCONCLUSIVE
    if low > 0:
        return Verdict.AGREES
    if high < 0:
        return Verdict.DISAGREES
    return Verdict.INCONCLUSIVE


def from_decisions(decisions: Sequence[Mapping], better: Mapping, worse: Mapping, mode: str) -> dict | None:
    """The race's decision on this pair, as {diff, ci_low, ci_high, verdict, equivalent} oriented like
    paired_differences; None when the race did not compare these two (it compares each setting with
    its leader). A decision's `diff` and interval are `setting` - `against` in the metric's units, and
    its verdict says whether `setting` is better, worse or equivalent."""
    for d in decisions:
        setting, against = _as_setting(d.get("setting")), _as_setting(d.get("against"))
        if _matches(setting, better) and _matches(against, worse):
            same_way = True
        elif _matches(setting, worse) and _matches(against, better):
            same_way = False
        else:
            continue
        sign = (1 if same_way else -1) * (1 if mode == "max" else -1)
        low, high = _number(d.get("ci_low")) * sign, _number(d.get("ci_high")) * sign
        low, high = (min(low, high), max(low, high)) if not math.isnan(low + high) else (math.nan, math.nan)
        raw = str(d.get("verdict"))
        if raw in ("better", "worse"):
            verdict = Verdict.AGREES if (raw == "better") == same_way else Verdict.DISAGREES
        else:
            verdict = Verdict.DISAGREES if raw == "equivalent" else Verdict.INCONCLUSIVE
        return {"diff": _number(d.get("diff")) * sign, "ci_low": low, "ci_high": high, "verdict": verdict,
                "equivalent": raw == "equivalent"}
    return None


def _number(value: object) -> float:
    """A decisions.json number; null (too few seeds for an interval) is NaN."""
    return math.nan if value is None else float(value)


def _as_setting(value: object) -> dict:
    """A decisions.json setting: a {path: value} mapping, or a label "a=1, b=mlp"."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        return dict(p.strip().split("=", 1) for p in value.split(",") if "=" in p)
    return {}


def _matches(found: Mapping, setting: Mapping) -> bool:
    """Keys may be full paths or their last parts ("mim.mask_ratio")."""
    if not found:
        return False
    for path, value in setting.items():
        key = next((k for k in found if k == path or path.endswith("." + k)), None)
        if key is None or not same_value(found[key], value):
            return False
    return True


def paper_findings(trials: pd.DataFrame, reference: Mapping, metric: str, mode: str, *,
                   factors: Sequence[str] = (), profile: str = "", decisions: Sequence[Mapping] = (),
                   aliases: Mapping[str, str] | None = None) -> list[Finding]:
    """Every finding of the reference block, judged on `trials` (finished trial rows: factor columns,
    `seed`, `metric`). `factors`: the study's factor paths (pairs agree on those a setting leaves open);
    `decisions`: the study run's decisions.json ([] for fixed seeds); `aliases`: short names of the
    study's factors, as in its run names (default: derived from the reference's paths)."""
    pairs = claimed_pairs(reference, mode)
    keys = list(dict.fromkeys(k for a, b, _ in pairs for k in (*a, *b)))
    missing = [k for k in keys if k not in trials]
    if missing:
        raise KeyError(f"the reference names {missing}, which this study does not vary")
    names = aliases if aliases is not None and all(k in aliases for k in keys) else factor_aliases(keys)
    out = []
    for better, worse, tied in pairs:
        claim = f"{setting_name(better, names)} {'ties' if tied else 'beats'} {setting_name(worse, names)}"
        counts = tuple(int(at_setting(trials, s)[metric].notna().sum()) if metric in trials else 0
                       for s in (better, worse))
        diffs = paired_differences(trials, better, worse, metric, mode, factors) if min(counts) else np.array([])
        mean, low, high = t_interval(diffs)
        spread = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan
        source, note, verdict = "paired t", "", verdict_of(low, high)
        decided = from_decisions(decisions, better, worse, mode)
        if decided is not None:
            mean, low, high, verdict, source = (decided["diff"], decided["ci_low"], decided["ci_high"],
                                                decided["verdict"], "decisions.json")
            note = "equivalent within the study's min_effect" if decided["equivalent"] else ""
        settle = seeds_to_settle(mean, spread) if verdict is Verdict.INCONCLUSIVE else None
        if tied:
            verdict, settle = Verdict.TIE, None
        if min(counts) == 0:
            verdict, settle, note = Verdict.NOT_JUDGED, None, "no finished trials of " + (
                "either setting" if max(counts) == 0 else setting_name(worse if counts[0] else better, names))
        elif profile == "smoke":
            verdict, settle, note = Verdict.NOT_JUDGED, None, SMOKE_NOTE
        elif verdict is Verdict.INCONCLUSIVE and len(diffs) < 2:
            note = "fewer than 2 paired seeds: no interval"
        out.append(Finding(better, worse, claim, mean, low, high, len(diffs), counts, verdict, settle, source, note))
    return out


COLUMNS = ["paper's finding", "ours: difference (95% CI)", "seeds", "verdict", "seeds to settle"]


def findings_table(findings: Sequence[Finding], unit: str = "") -> pd.DataFrame:
    """The findings as the table `ablate findings` prints and the dashboard opens with (COLUMNS)."""
    rows = []
    for f in findings:
        rows.append([f.claim, difference_text(f.diff, f.ci_low, f.ci_high, unit),
                     f"{f.seeds[0]} / {f.seeds[1]}" + (f" ({f.pairs} paired)" if f.pairs != min(f.seeds) else ""),
                     f.verdict.value + (f" ({f.note})" if f.note else ""),
                     settle_text(f)])
    return pd.DataFrame(rows, columns=COLUMNS)


def settle_text(f: Finding) -> str:
    if f.verdict is not Verdict.INCONCLUSIVE:
        return "-"
    if f.settle_seeds is None:
        return f"more than {MAX_SEEDS}" if f.pairs >= 2 else "unknown (needs 2 paired seeds)"
    return f"~{f.settle_seeds} per setting"


def difference_text(diff: float, low: float, high: float, unit: str = "") -> str:
    """+1.2 [-0.5, +2.9] points; "–" when nothing finished."""
    if math.isnan(diff):
        return "–"
    suffix = " points" if unit == "%" else (f" {unit}" if unit else "")
    if math.isnan(low):
        return f"{diff:+.1f}{suffix} (no interval)"
    return f"{diff:+.1f} [{low:+.1f}, {high:+.1f}]{suffix}"


def of_study(data) -> list[Finding]:
    """The findings of a loaded study (dashboards.load.StudyData); [] without a reference ranking."""
    reference = data.spec.get("reference") or {}
    if not (reference.get("ranking") or reference.get("values")) or data.headline is None:
        return []
    finished = data.trials[data.trials["state"] == "FINISHED"]
    paths = factor_paths(data)
    return paper_findings(finished, reference, data.headline, data.mode, factors=paths,
                          profile=str(data.spec.get("profile", "")), decisions=data.decisions,
                          aliases=study_aliases(data))


def factor_paths(data) -> list[str]:
    """The study's single factor paths (a zip group's label column is not a factor to pair on)."""
    from dashboards.load import TRIAL_COLUMNS

    return [c for c in data.trials.columns if c not in TRIAL_COLUMNS and "/" not in c and not c.startswith("zip: ")]


def study_aliases(data) -> dict[str, str]:
    """The short name of each factor, as the study's run names use them ("img", "txt", ...)."""
    return factor_aliases(factor_paths(data), data.spec.get("alias") or {})


@dataclass(frozen=True)
class StudyFindings:
    """A study's findings with what a reader needs around them: profile, metric, the paper's source."""

    study: str
    profile: str
    metric: str
    unit: str
    source: str
    findings: list[Finding]
    finished: int

    @classmethod
    def of(cls, data) -> StudyFindings:
        from dashboards.summaries import metric_unit

        reference = data.spec.get("reference") or {}
        finished = int((data.trials["state"] == "FINISHED").sum()) if len(data.trials) else 0
        return cls(data.name, str(data.spec.get("profile", "?")), data.headline or "-",
                   metric_unit(data.headline or ""), str(reference.get("source", "")), of_study(data), finished)

    def heading(self) -> str:
        return (f"{self.study}: {self.metric}{f' ({self.unit})' if self.unit else ''}, profile {self.profile}, "
                f"{self.finished} finished trials")

    def table(self) -> pd.DataFrame:
        return findings_table(self.findings, self.unit)

    def caveat(self) -> str:
        if not self.findings:
            return "No paper findings: the study file has no `reference` ranking (or no trial finished)."
        if self.profile == "smoke":
            return "Smoke profile: tiny models trained for seconds; the accuracies are meaningless, so no verdict."
        return ("Difference: the paper's better setting minus its worse one, paired by seed; "
                "95% t-interval (or the adaptive race's interval from decisions.json).")

    def text(self) -> str:
        from ablate_common.tables import render_table

        lines = [self.heading()]
        if self.findings:
            table = self.table()
            lines.append(render_table(list(table.columns), table.astype(str).values.tolist()))
        lines.append(self.caveat())
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"## {self.heading()}", ""]
        if self.source:
            lines += [f"Paper: {self.source}", ""]
        if self.findings:
            table = self.table()
            lines += ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
            lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
            lines.append("")
        lines += [self.caveat(), ""]
        return "\n".join(lines)
