"""The numbers behind the dashboard: pure functions of pandas frames (no MLflow, no Plotly).

Every function takes a tidy frame of trials (one row per trial run: factor columns, `seed`,
metric columns) and returns a small frame the renderers draw. They are tested against
hand-computed numbers in tests/test_dashboards_summaries.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
BOOTSTRAP_RESAMPLES = 10_000
MIN_SEEDS_FOR_CI = 3  # below this a drawn interval is noise about noise: say so instead


def parse_value(text: object) -> object:
    """A tag value back to a Python value: "0.75" -> 0.75, "4" -> 4, "true" -> True, else the string."""
    if not isinstance(text, str):
        return text
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def is_numeric(values: Sequence[object]) -> bool:
    """True when every non-missing value is a real number (bools are categories, not numbers)."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return bool(present) and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        for v in present
    )


def metric_unit(name: str) -> str:
    """The unit of a logged number: "%" for task accuracies, recalls and F1 (m3ae logs them in
    percent), "s" for seconds, "FLOPs"; "" when it has none (losses, pre-training accuracies)."""
    stage, _, metric = name.rpartition("/")
    if metric.endswith("seconds"):
        return "s"
    if metric.endswith("flops"):
        return "FLOPs"
    metric = metric.removeprefix("val_")
    if stage and stage != "pretrain" and (metric.endswith(("acc", "f1")) or metric[:4] in ("ir_r", "tr_r")):
        return "%"
    return ""


def metric_label(name: str) -> str:
    """An axis title: "synth_vqa/overall_acc (%)"."""
    unit = metric_unit(name)
    return f"{name} ({unit})" if unit else name


def metric_bounds(name: str) -> tuple[float, float]:
    """The range a metric can take: [0, 100] for percentages, [0, inf) for costs, else unbounded."""
    unit = metric_unit(name)
    if unit == "%":
        return 0.0, 100.0
    return (0.0, math.inf) if unit in ("s", "FLOPs") else (-math.inf, math.inf)


def format_number(value: float, unit: str = "") -> str:
    """A number at the precision a reader needs: 52.3 for percentages, 41 for seconds, 4 digits else."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "%":
        return f"{value:.1f}"
    if unit == "s":
        return f"{value:.0f}"
    if unit == "FLOPs":
        return f"{value:.2e}"
    return f"{value:.4g}"


def interval(summary: pd.DataFrame, bounds: tuple[float, float] = (-math.inf, math.inf),
             min_n: int = MIN_SEEDS_FOR_CI) -> pd.DataFrame:
    """The part of each 95% interval worth drawing: clipped to the metric's range, NaN (no bar) below
    `min_n` seeds, where a t-interval on 2 values spans ±6.4 standard deviations and says nothing.
    Returns [low, high, shown] aligned with `summary`."""
    enough = summary["n"].astype(float) >= min_n
    low = summary["ci_low"].astype(float).clip(lower=bounds[0]).where(enough)
    high = summary["ci_high"].astype(float).clip(upper=bounds[1]).where(enough)
    return pd.DataFrame({"low": low, "high": high, "shown": enough & low.notna()}, index=summary.index)


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """Mean and two-sided t-interval over seeds: (mean, low, high, n).

    With one value the interval is unknown (NaN); with none everything is NaN.
    [1, 2, 3] -> mean 2, half-width t(0.975, 2) * 1 / sqrt(3) = 2.484.
    """
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, math.nan, 1
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


def summarize(trials: pd.DataFrame, by: Sequence[str], metric: str) -> pd.DataFrame:
    """Mean, 95% CI and n of `metric` per level of the columns `by` (other factors averaged over).

    Returns columns [*by, mean, ci_low, ci_high, n, std], one row per level, in first-seen order.
    """
    if metric not in trials:
        return pd.DataFrame(columns=[*by, "mean", "ci_low", "ci_high", "n", "std"])
    rows = []
    for key, group in trials.groupby(list(by), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        values = group[metric].dropna().to_numpy(dtype=float)
        mean, low, high, n = mean_ci(values)
        std = float(values.std(ddof=1)) if n > 1 else math.nan
        rows.append({**dict(zip(by, key)), "mean": mean, "ci_low": low, "ci_high": high, "n": n, "std": std})
    out = pd.DataFrame(rows, columns=[*by, "mean", "ci_low", "ci_high", "n", "std"])
    return sort_levels(out, by)


def sort_levels(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Numeric factor levels ascending; categorical ones keep the order they were run in."""
    numeric = [c for c in by if is_numeric(list(frame[c]))]
    if not numeric:
        return frame.reset_index(drop=True)
    return frame.sort_values(numeric, kind="stable").reset_index(drop=True)


def best_level(summary: pd.DataFrame, mode: str) -> int:
    """Row index of the best mean (mode "max" or "min"); NaN means never win."""
    means = summary["mean"].astype(float)
    if means.isna().all():
        raise ValueError("no finished trial has a value for this metric")
    return int(means.idxmax() if mode == "max" else means.idxmin())


def paired_vs_best(
    trials: pd.DataFrame, by: Sequence[str], metric: str, mode: str, pair_on: Sequence[str]
) -> pd.DataFrame:
    """Each level of `by` against the best level: mean difference and a test of it.

    Trials pair up when they agree on `pair_on` (the seed, and the other factors' levels).
    With >= 2 pairs: paired t-test (scipy.stats.ttest_rel). With fewer pairs but >= 2 values on
    each side: a bootstrap of the difference of means. Otherwise no test (p = NaN).
    Returns [*by, mean, diff, n_pairs, test, p_value, significant, is_best].
    """
    summary = summarize(trials, by, metric)
    columns = [*by, "mean", "diff", "n_pairs", "test", "p_value", "significant", "is_best"]
    if summary.empty or summary["mean"].isna().all():
        return pd.DataFrame(columns=columns)
    best_index = best_level(summary, mode)
    best_mean = float(summary.loc[best_index, "mean"])
    levels = {_key(k): rows for k, rows in trials.groupby(list(by), sort=False, dropna=False)}
    best_rows = levels[_key(tuple(summary.loc[best_index, list(by)]))]
    rows = []
    for index, level in summary.iterrows():
        setting = {c: level[c] for c in by}
        if index == best_index:
            rows.append({**setting, "mean": level["mean"], "diff": 0.0, "n_pairs": len(best_rows),
                         "test": "best", "p_value": math.nan, "significant": False, "is_best": True})
            continue
        test, p_value, n_pairs = compare(levels[_key(tuple(setting.values()))], best_rows, metric, pair_on)
        rows.append({**setting, "mean": level["mean"], "diff": level["mean"] - best_mean,
                     "n_pairs": n_pairs, "test": test, "p_value": p_value,
                     "significant": bool(p_value < ALPHA) if not math.isnan(p_value) else False, "is_best": False})
    return pd.DataFrame(rows, columns=columns)


def compare(a: pd.DataFrame, b: pd.DataFrame, metric: str, pair_on: Sequence[str]) -> tuple[str, float, int]:
    """Test whether `metric` differs between trial sets a and b: (test name, two-sided p, pairs)."""
    pairs = a[[*pair_on, metric]].merge(b[[*pair_on, metric]], on=list(pair_on), suffixes=("_a", "_b"))
    pairs = pairs.dropna(subset=[f"{metric}_a", f"{metric}_b"])
    x, y = pairs[f"{metric}_a"].to_numpy(float), pairs[f"{metric}_b"].to_numpy(float)
    if len(pairs) >= 2:
        return "paired t", paired_t_pvalue(x, y), len(pairs)
    xa, xb = a[metric].dropna().to_numpy(float), b[metric].dropna().to_numpy(float)
    if len(xa) >= 2 and len(xb) >= 2:
        return "bootstrap", bootstrap_pvalue(xa, xb), len(pairs)
    return "too few seeds", math.nan, len(pairs)


def paired_t_pvalue(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided paired t-test p-value; identical differences (zero spread) give 1.0 or 0.0."""
    diff = x - y
    if np.allclose(diff, diff[0]):
        return 1.0 if np.isclose(diff[0], 0.0) else 0.0
    return float(stats.ttest_rel(x, y).pvalue)


def bootstrap_pvalue(a: np.ndarray, b: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> float:
    """Two-sided bootstrap p-value for mean(a) - mean(b) (resampling each group, fixed seed)."""
    rng = np.random.default_rng(seed)
    means_a = rng.choice(a, size=(resamples, len(a))).mean(axis=1)
    means_b = rng.choice(b, size=(resamples, len(b))).mean(axis=1)
    diffs = means_a - means_b
    tail = min((diffs <= 0).mean(), (diffs >= 0).mean())
    return float(min(1.0, 2 * tail))


def _key(key: object) -> tuple:
    """A groupby key as a hashable tuple with NaN made comparable."""
    key = key if isinstance(key, tuple) else (key,)
    return tuple("<nan>" if isinstance(k, float) and math.isnan(k) else k for k in key)


def at_setting(trials: pd.DataFrame, setting: Mapping[str, object]) -> pd.DataFrame:
    """Trials at a setting; numbers match across int/float/str ("0.75" == 0.75)."""
    mask = np.ones(len(trials), dtype=bool)
    for column, value in setting.items():
        value = parse_value(value)
        if is_numeric([value]):
            numbers = pd.to_numeric(trials[column].map(parse_value), errors="coerce").to_numpy(float)
            mask &= np.isclose(numbers, float(value), rtol=1e-9, atol=1e-12)
        else:
            mask &= trials[column].map(lambda v, value=value: parse_value(v) == value).to_numpy(bool)
    return trials[mask]


def same_value(a: object, b: object) -> bool:
    """Factor levels compare equal across types: 0.75 == "0.75", 1 == 1.0, NaN == NaN."""
    a, b = parse_value(a), parse_value(b)
    if is_numeric([a]) and is_numeric([b]):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12) or (
            math.isnan(float(a)) and math.isnan(float(b)))
    return a == b


def ranks(values: Sequence[float], mode: str) -> np.ndarray:
    """1 = best; ties share the mean rank."""
    x = np.asarray(values, dtype=float)
    return stats.rankdata(-x if mode == "max" else x, method="average")


def compare_with_reference(
    trials: pd.DataFrame, reference: Mapping, metric: str, mode: str
) -> tuple[pd.DataFrame, dict]:
    """Our results beside the paper's, setting by setting.

    `reference` is the study's reference block: `ranking` (settings, best first) and/or
    `values` ([{setting, value}]). Settings are dicts of factor path -> value; our trials are
    grouped by the keys the reference uses (other factors averaged over).
    Returns (table, agreement): the table has columns setting, paper_value, paper_rank, mean,
    ci_low, ci_high, n, our_rank, agrees; agreement has kendall_tau, p_value, best_agrees, n.
    """
    settings, paper_values = _reference_settings(reference)
    columns = ["setting", "paper_value", "paper_rank", "mean", "ci_low", "ci_high", "n", "our_rank", "agrees"]
    empty = {"kendall_tau": math.nan, "p_value": math.nan, "best_agrees": None, "n": 0}
    if not settings:
        return pd.DataFrame(columns=columns), empty
    keys = sorted({k for s in settings for k in s})
    missing = [k for k in keys if k not in trials]
    if missing:
        raise KeyError(f"reference setting uses {missing}, which is not a factor of this study "
                       f"(factors: {[c for c in trials.columns if '.' in c]})")
    rows = []
    for i, setting in enumerate(settings):
        ours = at_setting(trials, setting)
        mean, low, high, n = mean_ci(ours[metric].dropna().to_numpy(float) if metric in ours else [])
        rows.append({"setting": format_setting(setting), "paper_value": paper_values[i],
                     "paper_rank": math.nan, "mean": mean, "ci_low": low, "ci_high": high, "n": n})
    table = pd.DataFrame(rows, columns=columns)
    paper_rank = pd.Series(_paper_ranks(reference, settings, paper_values, mode), index=table.index)
    have = table["mean"].notna() & paper_rank.notna()
    our_rank = pd.Series(math.nan, index=table.index)
    our_rank[have] = ranks(table.loc[have, "mean"], mode)
    # Re-rank the paper among the settings we have, so a setting we lack does not shift the ranks.
    paper_rank[have] = stats.rankdata(paper_rank[have], method="average")
    table["paper_rank"], table["our_rank"] = paper_rank, our_rank
    table["agrees"] = [bool(our_rank[i] == paper_rank[i]) if have[i] else None for i in table.index]
    agreement = dict(empty, n=int(have.sum()))
    if have.sum() >= 2:
        tau = stats.kendalltau(table.loc[have, "paper_rank"], table.loc[have, "our_rank"])
        agreement["kendall_tau"], agreement["p_value"] = float(tau.statistic), float(tau.pvalue)
    if have.any():
        agreement["best_agrees"] = bool(
            (table.loc[have, "paper_rank"] == 1).eq(table.loc[have, "our_rank"] == 1).all())
    return table, agreement


def ours_with_paper_rank(trials: pd.DataFrame, reference: Mapping, metric: str, mode: str) -> pd.DataFrame:
    """Every setting we ran over the factors the reference names (others averaged over), with the
    paper's place where the paper ranks it (1 = its best; settings it ranks equal share a place) and its value.
    Returns summarize()'s columns plus setting, paper_rank, paper_value."""
    settings, values = _reference_settings(reference)
    keys = list(dict.fromkeys(k for s in settings for k in s))
    missing = [k for k in keys if k not in trials]
    if missing:
        raise KeyError(f"reference setting uses {missing}, which is not a factor of this study")
    ours = summarize(trials, keys, metric)
    ranks_ = _paper_ranks(reference, settings, values, mode)
    known = ~np.isnan(ranks_)
    ranks_[known] = stats.rankdata(ranks_[known], method="min")  # places: a tie shares the better one
    ours["setting"] = [format_setting({k: r[k] for k in keys}) for _, r in ours.iterrows()]
    ours["paper_rank"], ours["paper_value"] = math.nan, math.nan
    for setting, rank, value in zip(settings, ranks_, values):
        hit = [i for i, r in ours.iterrows() if all(same_value(r[k], v) for k, v in setting.items())]
        ours.loc[hit, "paper_rank"], ours.loc[hit, "paper_value"] = rank, value
    return ours


def _reference_settings(reference: Mapping) -> tuple[list[dict], list[float]]:
    """Union of the settings in `ranking` and `values`, in ranking order, with paper values (or NaN)."""
    settings: list[dict] = []
    values: list[float] = []

    def index_of(setting: dict) -> int:
        for i, known in enumerate(settings):
            if known.keys() == setting.keys() and all(same_value(known[k], setting[k]) for k in known):
                return i
        settings.append(dict(setting))
        values.append(math.nan)
        return len(settings) - 1

    for entry in reference.get("ranking") or []:
        for setting in entry if isinstance(entry, list) else [entry]:  # a list: settings ranked equal
            index_of(setting)
    for entry in reference.get("values") or []:
        values[index_of(entry["setting"])] = float(entry["value"])
    return settings, values


def _paper_ranks(reference: Mapping, settings: list[dict], values: list[float], mode: str) -> np.ndarray:
    """The paper's rank per setting: its `ranking` order when given, else ranked by its values."""
    ranking = reference.get("ranking") or []
    if ranking:
        out = np.full(len(settings), np.nan)
        place = 0
        for entry in ranking:  # a group of equal settings shares the mean of the places it takes
            group = entry if isinstance(entry, list) else [entry]
            out[place: place + len(group)] = place + (len(group) + 1) / 2
            place += len(group)
        return out
    return ranks(values, mode)


def format_setting(setting: Mapping[str, object]) -> str:
    """{"model.mim.mask_ratio": 0.75} -> "mim.mask_ratio=0.75" (the last two path parts)."""
    from ablate_common.naming import format_value

    return ", ".join(f"{short_name(k)}={format_value(v) if isinstance(v, float) else v}" for k, v in setting.items())


def short_name(path: str) -> str:
    if " " in path:  # already a label ("zip: mim.enabled, itm.enabled")
        return path
    parts = path.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else path


def pareto_front(points: pd.DataFrame, cost: str, value: str, mode: str) -> pd.Series:
    """Boolean mask of the points no other point beats: lower-or-equal cost and better-or-equal value,
    strictly better in one. NaN points are never on the front."""
    c = points[cost].to_numpy(float)
    v = points[value].to_numpy(float)
    v = v if mode == "max" else -v
    ok = np.isfinite(c) & np.isfinite(v)
    front = np.zeros(len(points), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        front[i] = not dominated.any()
    return pd.Series(front, index=points.index)


def state_counts(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials per state (FINISHED, FAILED, KILLED, RUNNING, PRUNED) -> [state, trials]."""
    counts = trials["state"].value_counts()
    order = ["FINISHED", "PRUNED", "FAILED", "KILLED", "RUNNING", "SCHEDULED"]
    states = [s for s in order if s in counts] + sorted(s for s in counts.index if s not in order)
    return pd.DataFrame({"state": states, "trials": [int(counts[s]) for s in states]})


# --------------------------------------------------------------------------- verdicts (decisions.json)


def setting_label(setting: Mapping[str, object], aliases: Mapping[str, str] | None = None) -> str:
    """A setting as its run name uses it ("pretrain-noimg-txt-itm") when the study's factor aliases
    are given, else as paths and values ("mim.mask_ratio=0.75")."""
    from ablate_common.naming import setting_name

    return setting_name(setting, aliases) if aliases is not None else format_setting(setting)


def decision_table(decisions: Sequence[Mapping], aliases: Mapping[str, str] | None = None) -> pd.DataFrame:
    """decisions.json (each setting against the leader) as the dashboard's opening table:
    [setting, vs leader, seeds, difference, ci_low, ci_high, verdict]; settings named as `setting_label`."""
    rows = [{"setting": setting_label(d["setting"], aliases) or "(one setting)",
             "vs leader": setting_label(d["against"], aliases),
             "seeds": d["seeds"], "difference": _number(d.get("diff")), "ci_low": _number(d.get("ci_low")),
             "ci_high": _number(d.get("ci_high")), "verdict": d["verdict"]} for d in decisions]
    return pd.DataFrame(rows, columns=["setting", "vs leader", "seeds", "difference", "ci_low", "ci_high", "verdict"])


def paired_differences(trials: pd.DataFrame, decisions: Sequence[Mapping], metric: str,
                       aliases: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per comparison of decisions.json, the paired differences by seed (setting - leader) from the
    finished trials: [comparison, seed, setting_value, against_value, diff]; comparisons labelled
    "<setting> vs <leader>" as `decision_table` names them."""
    columns = ["comparison", "seed", "setting_value", "against_value", "diff"]
    finished = trials[trials["state"] == "FINISHED"] if "state" in trials else trials
    rows = []
    for d in decisions:
        if any(path not in finished for path in {**d["setting"], **d["against"]}):
            continue  # a decision about paths these trials do not carry
        own = at_setting(finished, d["setting"])[["seed", metric]].dropna()
        lead = at_setting(finished, d["against"])[["seed", metric]].dropna()
        pairs = own.merge(lead, on="seed", suffixes=("_setting", "_against")).sort_values("seed")
        label = f"{setting_label(d['setting'], aliases)} vs {setting_label(d['against'], aliases)}"
        for _, p in pairs.iterrows():
            a, b = float(p[f"{metric}_setting"]), float(p[f"{metric}_against"])
            rows.append({"comparison": label, "seed": int(p["seed"]), "setting_value": a, "against_value": b,
                         "diff": a - b})
    return pd.DataFrame(rows, columns=columns)


def _number(value: object) -> float:
    return math.nan if value is None else float(value)


# --------------------------------------------------------------------------- what a figure draws


def setting_labels(trials: pd.DataFrame, factors: list[str]) -> pd.Series:
    """A short label per trial from the factors that vary among `trials` ("mim.mask_ratio=0.75")."""
    varying = [f for f in factors if trials[f].astype(str).nunique() > 1]
    if not varying:
        return pd.Series(["all trials"] * len(trials), index=trials.index)
    return trials.apply(lambda r: format_setting({f: r[f] for f in varying}), axis=1)


def drawn_trials(trials: pd.DataFrame, factors: list[str], per_label: int, cap: int) -> pd.DataFrame:
    """The trials a figure draws: round robin over settings (one of each first), at most `per_label`
    per setting and `cap` in all, with their setting label."""
    trials = trials.assign(label=setting_labels(trials, factors))
    rank = trials.groupby("label", sort=False).cumcount()
    return trials[rank < per_label].assign(_rank=rank).sort_values("_rank", kind="stable").head(cap)


def pretrain_runs(trials: pd.DataFrame, stages: pd.DataFrame) -> pd.Series:
    """Each trial's pre-train run: its `ablate.pretrain_run_id` link, else its pre-train child run."""
    children = stages[stages["kind"] == "pretrain"].drop_duplicates("parent_run_id")
    child = trials["run_id"].map(children.set_index("parent_run_id")["run_id"])
    return trials["pretrain_run_id"].where(trials["pretrain_run_id"].notna(), child)


def is_curve(key: str) -> bool:
    """Losses, accuracies and validation metrics are learning curves; lr and throughput are not."""
    name = key.split("/", 1)[1]
    return "loss" in name or name.endswith("acc") or name.startswith("val_")


def over_steps(history: pd.DataFrame, keys: list[str]) -> list[str]:
    """Keys logged at several steps (a final number or a single validation point is no curve)."""
    return [k for k in keys if history.loc[history["key"] == k, "step"].nunique() > 1]


def cost_points(finished: pd.DataFrame, factors: list[str], metric: str, costs: list[str], mode: str) -> pd.DataFrame:
    """Mean metric (`mean`) and costs per setting, a `label` each, and per cost whether the setting
    is on the Pareto front (`front_<cost>`)."""
    by = factors or ["seed"]
    points = finished.groupby(by, sort=False, dropna=False)[[metric, *costs]].mean().reset_index()
    points = points.rename(columns={metric: "mean"})
    points["label"] = setting_labels(points, factors) if factors else points["seed"].astype(str)
    for cost in costs:
        points[f"front_{cost}"] = pareto_front(points, cost, "mean", mode)
    return points


def significance_table(tests: pd.DataFrame, by: Sequence[str], unit: str = "") -> pd.DataFrame:
    """`paired_vs_best`'s rows as the dashboard shows them, numbers at the metric's precision."""
    points = " (points)" if unit == "%" else (f" ({unit})" if unit else "")
    return pd.DataFrame({
        "level": [format_setting({c: r[c] for c in by}) for _, r in tests.iterrows()],
        f"mean{f' ({unit})' if unit else ''}": [format_number(m, unit) for m in tests["mean"]],
        f"difference vs best{points}": [format_number(d, unit) for d in tests["diff"]],
        "pairs": tests["n_pairs"], "test": tests["test"],
        "p": [f"{p:.3f}" if pd.notna(p) else "–" for p in tests["p_value"]],
        "significant?": ["best" if b else ("yes" if s else "no") for b, s in zip(tests["is_best"], tests["significant"])],
    })


def failure_table(trials: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """The failed and killed trials: [trial, setting, seed, state, error, run]."""
    failed = trials[trials["state"].isin(["FAILED", "KILLED"])]
    return pd.DataFrame({
        "trial": failed["trial_id"], "setting": setting_labels(trials, factors).loc[failed.index],
        "seed": failed["seed"], "state": failed["state"], "error": failed["error"].replace("", "–"),
        "run": failed["run_id"]})
