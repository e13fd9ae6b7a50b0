"""The end of a search: the best trial (or the Pareto front) and every trial's state, and the
best setting written as a grid study to re-run with more seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from ablate_common.tables import render_table
from ablations.paths import within
from ablations.search import SearchSpec
from ablations.study import format_value, short_path


def params_text(params: Mapping[str, Any]) -> str:
    """A trial's parameters on one line: `lr=0.001 depth=4`."""
    return " ".join(f"{short_path(p)}={_fmt(v)}" for p, v in params.items())


def objective_text(metric: str, value: float) -> str:
    """An objective's value at its unit's precision ("52.3" for an accuracy in percent)."""
    from dashboards.summaries import format_number, metric_unit

    return format_number(value, metric_unit(metric))


def _label(metric: str) -> str:
    from dashboards.summaries import metric_label

    return metric_label(metric)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return format_value(value)


def state_counts(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def best_trials(study) -> list:
    """The best trial (one objective) or the Pareto front (several), best first."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: t.number)


def summary(spec: SearchSpec, study) -> str:
    """The end table: the best trial or the Pareto front, then the state of every trial."""
    counts = state_counts(study)
    parts = [f"Search {spec.name}: {len(study.trials)} trials ("
             + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) + ")"]
    best = best_trials(study)
    if not best:
        parts.append("no trial completed: no best trial yet")
    else:
        title = "Best trial" if len(spec.objectives) == 1 else f"Pareto front ({len(best)} trials)"
        parts += ["", f"{title}:", _trial_table(spec, best)]
    failed = [t for t in study.trials if t.state.name == "FAIL" and t.user_attrs.get("error")]
    if failed:
        parts += ["", "Failed trials:", *[f"  {t.number}: {t.user_attrs['error']}" for t in failed]]
    return "\n".join(parts)


def _trial_table(spec: SearchSpec, trials) -> str:
    paths = list(spec.space)
    header = ["trial", *[short_path(p) for p in paths], *[_label(m) for m in spec.metric_names], "MLflow run"]
    rows = [[str(t.number), *[_fmt(t.params.get(p)) for p in paths],
             *[objective_text(m, v) for m, v in zip(spec.metric_names, t.values)],
             t.user_attrs.get("mlflow_run_id") or f"(= trial {t.user_attrs.get('ablate.duplicate_of', '?')})"]
            for t in trials]
    return render_table(header, rows)


def best_study_text(spec: SearchSpec, study) -> str | None:
    """The best trial (or the Pareto front, zipped) as a grid study with more seeds, ready for `ablate run`."""
    best = best_trials(study)
    if not best:
        return None
    unique: dict[tuple, Any] = {}
    for t in best:  # a duplicate's copy sits on the front beside its original: keep the original
        unique.setdefault(tuple(repr(t.params[p]) for p in spec.space), t)
    best = list(unique.values())
    paths = list(spec.space)
    values = {p: [t.params[p] for t in best] for p in paths}
    if len(best) == 1 or len(paths) == 1:
        factors = {p: list(dict.fromkeys(v)) for p, v in values.items()}
    else:  # the front's points vary together, not as a grid
        factors = {"zip": [values]}
    seeds = sorted(set(spec.seeds) | {max(spec.seeds) + 1, max(spec.seeds) + 2})
    which = f"trial {best[0].number}" if len(best) == 1 else f"the Pareto front (trials {[t.number for t in best]})"
    study_spec = spec.as_study(factors, seeds=seeds, name=f"{spec.name}_best",
                               description=f"{which} of the search {spec.name}, re-run with seeds {seeds}")
    if study_spec.num_trials() > study_spec.max_trials:  # a wide front: raise the study's guard to fit it
        study_spec = study_spec.model_copy(update={"max_trials": study_spec.num_trials()})
    data = study_spec.model_dump(exclude_defaults=True)
    data.pop("profile", None)  # always written: the best setting is only best at its profile
    data = {"name": data.pop("name"), "kind": "study", "profile": spec.profile, **data}
    results = ["#   trial {}: {}\n".format(t.number, ", ".join(f"{m} {objective_text(m, v)}"
                                                  for m, v in zip(spec.metric_names, t.values)))
               for t in best]
    header = (f"# Written by `ablate search` from {which} of the Optuna study {spec.name!r}\n"
              + "".join(results) + "# Run it: ablate run <this file>\n")
    return header + yaml.safe_dump(data, sort_keys=False)


def write_best_study(spec: SearchSpec, study, workdir: Path) -> Path | None:
    """<workdir>/searches/<name>/best_study.yaml, checked by the study loader before it is kept."""
    from ablations.spec import parse_spec

    text = best_study_text(spec, study)
    if text is None:
        return None
    out = within(Path(workdir), "searches", spec.name, "best_study.yaml")
    parse_spec(text, str(out))  # the file must be a valid study as written
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return out
