"""Search files: an Optuna search over dotted config paths, loaded and checked before anything runs.

A search is a study file with `kind: search` and a `space` instead of `factors`:

    name: search_masking
    kind: search
    profile: laptop
    base: {pretrain.steps: 400}                        # dotted overrides for every trial
    space:
      model.mim.mask_ratio: {type: float, low: 0.3, high: 0.95}
      model.mim.recon_layer: {type: int, low: 0, high: 2}           # step: 1 by default
      model.mim.decoder: {type: categorical, choices: [transformer, mlp]}
      finetune.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
    objectives:                                        # one, or several for a Pareto front
      - {metric: synth_vqa/overall_acc, direction: maximize}
    sampler: tpe                                       # tpe | gp | random | grid | nsga2, or {name: tpe, seed: 0, ...}
    pruner: median                                     # none | median | hyperband, or {name: median, ...}
    pruner_metric: synth_vqa/overall_acc               # the validation metric it watches (default: the objective's)
    n_trials: 12
    timeout: 3600                                      # seconds; optional
    seeds: [0]                                         # every Optuna trial runs each seed; objectives are means
    tasks: [synth_vqa]
    enqueue: [{model.mim.mask_ratio: 0.75, ...}]       # points to evaluate first (the paper's setting)
    resources: {cpu: 1, gpu: 0}
    plugins: [my_masking]                              # modules that register components of your own

Errors come from the study machinery of `ablations.spec` (`SpecError`, file and
line, closest valid name), and values are checked by building a `Config` at
every dimension's low and high (or each choice), and at every value of an int
dimension, on top of `base`. A grid sampler's space is counted before it is listed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import Field, ValidationError

from ablations.spec import (
    COST_METRICS, NAME_PATTERN, DataSpec, Resources, Seed, StudySpec, base_config, check_inputs, check_path,
    check_resources, load_plugins, produced_metrics, read_file,
)
from ablations.specfile import Problems, SpecError, Strict, closest, load_yaml, schema_errors
from m3ae.config import Config, ConfigError, apply_overrides, config_hash, profile

SAMPLERS = ("tpe", "gp", "random", "grid", "nsga2")
MAX_GRID_POINTS = 10_000  # a grid sampler's space is counted, and refused above this, before it is enumerated
MAX_CHECKED_INTS = 200  # an int dimension's values each build a config (~3 ms); more are sampled evenly
PRUNERS = ("none", "median", "hyperband")
Scalar = Union[bool, int, float, str, None]  # what Optuna can store as a categorical choice


# --------------------------------------------------------------------------- the schema


class FloatDim(Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False  # sample uniformly in log space (learning rates)
    step: Optional[float] = None  # discretise (not with log)


class IntDim(Strict):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False


class CategoricalDim(Strict):
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)


DIMENSIONS = {"float": FloatDim, "int": IntDim, "categorical": CategoricalDim}


class Objective(Strict):
    metric: str  # "<task>/<metric>" or a cost metric, e.g. "cost/pretrain_seconds"
    direction: Literal["maximize", "minimize"] = "maximize"


class SamplerSpec(Strict):
    name: Literal["tpe", "gp", "random", "grid", "nsga2"] = "tpe"
    seed: Optional[Seed] = None  # a resumed search offsets it by the trials done, so it never repeats itself
    n_startup_trials: Optional[int] = Field(None, ge=0)  # tpe / gp: random trials before the model kicks in
    population_size: Optional[int] = Field(None, ge=2)  # nsga2


class PrunerSpec(Strict):
    name: Literal["none", "median", "hyperband"] = "none"
    n_startup_trials: int = Field(2, ge=0)  # median: finished trials before anything is pruned
    n_warmup_steps: int = Field(1, ge=0)  # median: evaluations a trial always gets
    min_resource: int = Field(1, ge=1)  # hyperband: evaluations before the first cut
    reduction_factor: int = Field(3, ge=2)  # hyperband


class SearchSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=100)
    description: str = ""
    kind: Literal["search"]
    profile: str = "laptop"
    base: dict[str, Any] = {}
    space: dict[str, dict[str, Any]] = Field(min_length=1)  # {path: {type: ..., ...}}, checked per dimension
    objectives: list[Objective] = Field(min_length=1)
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    pruner_metric: Optional[str] = None
    n_trials: int = Field(ge=1)
    timeout: Optional[float] = Field(None, gt=0)  # seconds; no new trial starts after it
    seeds: list[Seed] = Field([0], min_length=1)
    data: DataSpec = DataSpec()
    tasks: list[str] = Field(min_length=1)
    enqueue: list[dict[str, Any]] = []  # parameter sets to try first
    resources: Resources = Resources()
    plugins: list[str] = []  # modules imported before any config is built (m3ae.plugins)

    # ---- derived views

    @property
    def dimensions(self) -> dict[str, FloatDim | IntDim | CategoricalDim]:
        return {path: DIMENSIONS[d["type"]].model_validate(d) for path, d in self.space.items()}

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def watched_metric(self) -> str | None:
        """The validation metric the pruner watches, or None when nothing is pruned."""
        if self.pruner.name == "none":
            return None
        return self.pruner_metric or self.objectives[0].metric

    def fixed_overrides(self) -> dict[str, Any]:
        """Overrides shared by every trial, exactly as a study builds them."""
        return self.as_study(factors={}).fixed_overrides()

    def config(self, params: dict[str, Any], seed: int) -> Config:
        """The resolved config of one parameter set and seed."""
        return apply_overrides(profile(self.profile), {**self.fixed_overrides(), **params, "seed": seed})

    def fingerprint(self) -> str:
        """What a trial means: a stored Optuna study only resumes under the same fingerprint."""
        meaning = {"profile": self.profile, "base": self.base, "data": self.data.model_dump(),
                   "tasks": self.tasks, "seeds": self.seeds, "space": self.space,
                   "objectives": [o.model_dump() for o in self.objectives]}
        if self.plugins:  # only then, so searches without plugins keep their fingerprints
            meaning["plugins"] = list(self.plugins)
        return config_hash(meaning)

    def as_study(self, factors: dict[str, Any], seeds: list[int] | None = None, name: str | None = None,
                 description: str = "") -> StudySpec:
        """A grid study with the same profile, base, data, tasks and resources."""
        first = self.objectives[0]
        return StudySpec(name=name or self.name, description=description, profile=self.profile, base=dict(self.base),
                         factors=factors, seeds=list(seeds or self.seeds), data=self.data, tasks=list(self.tasks),
                         metric={"name": first.metric, "mode": "max" if first.direction == "maximize" else "min"},
                         resources=self.resources, plugins=list(self.plugins))


# --------------------------------------------------------------------------- Optuna objects


def distributions(spec: SearchSpec) -> dict:
    """{path: optuna distribution} of the search space."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for path, dim in spec.dimensions.items():
        if isinstance(dim, FloatDim):
            out[path] = FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
        elif isinstance(dim, IntDim):
            out[path] = IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
        else:
            out[path] = CategoricalDistribution(dim.choices)
    return out


def grid_values(spec: SearchSpec) -> dict[str, list]:
    """The grid sampler's points per dimension (categorical choices, every int step)."""
    grid = {}
    for path, dim in spec.dimensions.items():
        if isinstance(dim, CategoricalDim):
            grid[path] = list(dim.choices)
        elif isinstance(dim, IntDim):
            grid[path] = list(range(dim.low, dim.high + 1, dim.step))
        else:  # validated: a float dimension on a grid has a step
            n = int(round((dim.high - dim.low) / dim.step))
            grid[path] = [round(dim.low + i * dim.step, 12) for i in range(n + 1)]
    return grid


def dimension_size(dim: FloatDim | IntDim | CategoricalDim) -> int:
    """Points of a dimension on a grid, counted without listing them (a float needs its step)."""
    if isinstance(dim, CategoricalDim):
        return len(dim.choices)
    if isinstance(dim, IntDim):
        return (dim.high - dim.low) // dim.step + 1
    return int(round((dim.high - dim.low) / dim.step)) + 1


def grid_size(spec: SearchSpec) -> int:
    return math.prod(dimension_size(dim) for dim in spec.dimensions.values())


def build_sampler(spec: SearchSpec, seed_offset: int = 0):
    """The sampler; `seed_offset` (trials already in the study) keeps a resumed seeded
    search from proposing its first points again."""
    import optuna

    s = spec.sampler
    seed = None if s.seed is None else s.seed + seed_offset
    startup = {} if s.n_startup_trials is None else {"n_startup_trials": s.n_startup_trials}
    if s.name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **startup)
    if s.name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **startup)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "grid":
        return optuna.samplers.GridSampler(grid_values(spec), seed=seed)
    population = {} if s.population_size is None else {"population_size": s.population_size}
    return optuna.samplers.NSGAIISampler(seed=seed, **population)


def build_pruner(spec: SearchSpec):
    import optuna

    p = spec.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p.min_resource, reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


# --------------------------------------------------------------------------- loading


def load_search(path: str | Path, profile_name: str | None = None, data_root: str | None = None) -> SearchSpec:
    """Read and fully validate a search file. `profile_name` replaces the search's profile
    and `data_root` its data root, as for studies."""
    return parse_search(read_file(path, "search"), str(path), profile_name, data_root)


def parse_search(text: str, source: str = "<search>", profile_name: str | None = None,
                 data_root: str | None = None) -> SearchSpec:
    data, lines = load_yaml(text, source)
    problems = Problems(source, lines)
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of search keys (name, space, objectives, ...), got {data!r}")
    if data.get("kind") != "search":
        raise SpecError(f"{source}: kind: expected 'search' for an Optuna search file, got {data.get('kind')!r}"
                        + ("; a grid study runs with `ablate run`" if data.get("kind", "study") == "study" else ""))
    data = dict(data)
    for key in ("sampler", "pruner"):  # `sampler: tpe` is short for `sampler: {name: tpe}`
        if isinstance(data.get(key), str):
            data[key] = {"name": data[key]}
    if profile_name is not None:
        data["profile"] = profile_name
    if data_root is not None:
        data["data"] = {**(data.get("data") or {}), "root": str(data_root)}
    try:
        spec = SearchSpec.model_validate(data)
    except ValidationError as error:
        schema_errors(error, problems, root=SearchSpec)
        problems.raise_if_any()
    load_plugins(spec.plugins, source, problems)
    problems.raise_if_any()
    _check_dimensions(spec, problems)
    problems.raise_if_any()
    _check_semantics(spec, problems)
    problems.raise_if_any()
    return spec


def _check_dimensions(spec: SearchSpec, problems: Problems) -> None:
    """Each `space` entry: a known type, its own keys, and a distribution Optuna accepts."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    for path, raw in spec.space.items():
        loc = ("space", path)
        kind = raw.get("type")
        if kind not in DIMENSIONS:
            problems.add(loc + ("type",) if "type" in raw else loc,
                         f"expected type one of {list(DIMENSIONS)}, got {kind!r}{closest(kind, DIMENSIONS)}")
            continue
        model = DIMENSIONS[kind]
        try:
            dim = model.model_validate(raw)
        except ValidationError as error:
            for item in error.errors():
                key = item["loc"]
                if item["type"] == "extra_forbidden":
                    fields = list(model.model_fields)
                    article = "an" if kind == "int" else "a"
                    problems.add(loc + key, f"unknown key {key[-1]!r} for {article} {kind} dimension: expected one of "
                                            f"{fields}{closest(key[-1], fields)}")
                elif item["type"] == "missing":
                    problems.add(loc + key, f"missing: a {kind} dimension needs {key[-1]!r}")
                else:
                    problems.add(loc + key, f"{item['msg'].lower()}, got {item['input']!r}")
            continue
        try:  # Optuna's own rules: low <= high, log needs low > 0, no log with a step, ...
            if isinstance(dim, FloatDim):
                FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
            elif isinstance(dim, IntDim):
                IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
            else:
                CategoricalDistribution(dim.choices)
        except ValueError as error:
            problems.add(loc, f"not a valid {kind} distribution: {error}")
            continue
        if isinstance(dim, CategoricalDim) and len(set(map(repr, dim.choices))) != len(dim.choices):
            problems.add(loc + ("choices",), f"choices repeat: {dim.choices}")
        if isinstance(dim, FloatDim) and dim.low == dim.high:
            problems.add(loc, f"low and high are both {dim.low}: a fixed value belongs in base")
        if spec.sampler.name == "grid" and isinstance(dim, FloatDim) and dim.step is None:
            problems.add(loc, "the grid sampler needs a step on float dimensions (or use categorical choices)")
    if spec.sampler.name == "grid" and not problems.items:
        size = grid_size(spec)
        if size > MAX_GRID_POINTS:
            problems.add(("space",), f"the grid sampler's space has {size:,} points, more than {MAX_GRID_POINTS:,}: "
                                     "use fewer values (bigger steps, fewer choices) or another sampler")


def _check_semantics(spec: SearchSpec, problems: Problems) -> None:
    """Paths, tasks, metrics, sampler and pruner fit together; then build configs."""
    base_cfg = base_config(spec, problems)
    if base_cfg is None:
        return

    def check_space() -> None:
        for path in spec.space:
            if path in spec.base:
                problems.add(("space", path), f"{path} is both searched and fixed in base; keep one")
            check_path(path, ("space", path), problems)

    check_inputs(spec, problems, check_space, spec.seeds)
    if problems.items:
        return

    _check_objectives(spec, problems)
    for i, point in enumerate(spec.enqueue):
        for path in point:
            if path not in spec.space:
                problems.add(("enqueue", i, path), f"{path!r} is not a dimension of the space: expected one of "
                                                   f"{list(spec.space)}{closest(path, spec.space)}")
        missing = [p for p in spec.space if p not in point]
        if missing:
            problems.add(("enqueue", i), f"an enqueued point sets every dimension; missing {missing}")
    if problems.items:
        return
    _check_configs(spec, base_cfg, problems)


def _check_objectives(spec: SearchSpec, problems: Problems) -> None:
    produced = produced_metrics(spec.tasks)
    for i, objective in enumerate(spec.objectives):
        if objective.metric not in produced:
            problems.add(("objectives", i, "metric"), f"no task of this search produces {objective.metric!r}: expected "
                                                      f"one of {produced}{closest(objective.metric, produced)}")
    if len(set(spec.metric_names)) != len(spec.metric_names):
        problems.add(("objectives",), f"an objective repeats: {spec.metric_names}")
    several = len(spec.objectives) > 1
    if spec.sampler.name == "gp" and several:
        problems.add(("sampler", "name"), "the gp sampler optimises one objective; use tpe or nsga2 for several")
    if spec.pruner.name != "none":
        if several:
            problems.add(("pruner", "name"), "Optuna prunes single-objective searches only; use pruner: none")
        if spec.objectives[0].direction == "minimize":  # every task metric is better when higher
            problems.add(("pruner", "name"), "the pruner compares the watched validation metric in the objective's "
                                             "direction, and a minimised objective would prune the most accurate "
                                             "trials; use pruner: none")
        watched = [m for m in produced if m not in COST_METRICS]
        if spec.watched_metric not in watched:
            key = ("pruner_metric",) if spec.pruner_metric else ("pruner", "name")
            problems.add(key, f"the pruner watches a validation metric of a task, got {spec.watched_metric!r}: "
                              f"expected one of {watched}{closest(spec.watched_metric, watched)}")
    elif spec.pruner_metric is not None:
        problems.add(("pruner_metric",), "pruner_metric is set but pruner is none")


def _check_configs(spec: SearchSpec, base_cfg: Config, problems: Problems) -> None:
    """Base alone, then every dimension at each end (or choice) on top of it, then enqueued points."""
    fixed = spec.fixed_overrides()
    try:
        cfg = apply_overrides(base_cfg, fixed)
    except ConfigError as error:
        problems.add(("base",), str(error))
        return
    if not check_resources(spec.resources, cfg, problems):
        return
    for path, dim in spec.dimensions.items():
        if isinstance(dim, CategoricalDim):
            values = [("choices", i, v) for i, v in enumerate(dim.choices)]
        else:
            values = [("low", None, dim.low), ("high", None, dim.high)]
        for key, index, value in values:
            try:
                apply_overrides(base_cfg, {**fixed, path: value})
            except ConfigError as error:
                loc = ("space", path, key) + ((index,) if index is not None else ())
                problems.add(loc, f"{value!r} is rejected by the config: {error}")
        if isinstance(dim, IntDim) and not problems.items:
            _check_int_values(path, dim, lambda v: apply_overrides(base_cfg, {**fixed, path: v}), problems)
    for i, point in enumerate(spec.enqueue):
        try:
            apply_overrides(base_cfg, {**fixed, **point})
        except ConfigError as error:
            problems.add(("enqueue", i), str(error))


def _check_int_values(path: str, dim: IntDim, build: Callable[[int], Any], problems: Problems) -> None:
    """Values between the ends can fail where the ends pass (num_heads 1..4 on a width of 32: 3 does
    not divide it): build a config for every value the dimension can take (an even sample of
    MAX_CHECKED_INTS of them, ends included, in a wider range)."""
    n = dimension_size(dim)
    picks = range(n) if n <= MAX_CHECKED_INTS else sorted({round(i * (n - 1) / (MAX_CHECKED_INTS - 1))
                                                           for i in range(MAX_CHECKED_INTS)})
    rejected, valid, first = [], [], ""
    for i in picks:
        value = dim.low + i * dim.step
        try:
            build(value)
            valid.append(value)
        except ConfigError as error:
            rejected.append(value)
            first = first or str(error)
    if rejected:
        shown = ", ".join(map(str, rejected[:8])) + (", ..." if len(rejected) > 8 else "")
        hint = (f"; a categorical dimension with the valid values would do: {{type: categorical, choices: {valid}}}"
                if valid and len(valid) <= 20 else "")
        problems.add(("space", path), f"{len(rejected)} value(s) between low and high are rejected by the config "
                                      f"({shown}): {first}{hint}")


def data_configs(spec: SearchSpec) -> list[Config]:
    """Configs that cover what a search's trials read: its base, and each choice of a categorical
    dimension (data.pretrain, pretrain.enabled, ...), for `ablations.spec.check_data`."""
    configs = [spec.config({}, spec.seeds[0])]
    for path, dim in spec.dimensions.items():
        if isinstance(dim, CategoricalDim):
            configs += [spec.config({path: choice}, spec.seeds[0]) for choice in dim.choices]
    return configs


def is_search_file(path: str | Path) -> bool:
    """Whether a YAML file says `kind: search` (anything unreadable is left to the study loader,
    which says what is wrong with it)."""
    try:
        data, _ = load_yaml(read_file(path), str(path))
    except (OSError, SpecError):
        return False
    return isinstance(data, dict) and data.get("kind") == "search"


def describe(spec: SearchSpec) -> str:
    """One line for `ablate validate`."""
    objectives = ", ".join(f"{o.metric} ({o.direction})" for o in spec.objectives)
    return (f"search {spec.name!r}, {len(spec.space)} dimensions, {spec.n_trials} trials x {len(spec.seeds)} seed(s), "
            f"profile {spec.profile}, sampler {spec.sampler.name}, pruner {spec.pruner.name}, objectives {objectives}")
