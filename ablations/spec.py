"""Study files: load, check and describe a YAML study before anything runs.

A study is a grid over dotted config paths:

    name: mask_ratio
    kind: study
    profile: laptop
    base: {pretrain.steps: 600}                       # dotted overrides for every trial
    factors:
      model.mim.mask_ratio: [0.5, 0.75]               # crossed as a grid ...
      zip:                                            # ... with groups varied together
        - {model.mim.decoder: [transformer, mlp], model.mim.decoder_depth: [2, 1]}
    seeds: [0, 1]                                     # fixed; or adaptive, seeds where the ranking is open:
                                                      # {start: 2, max: 8, min_effect: 1.0, alpha: 0.05}
    data: {pretrain: synth_pairs, root: null}
    tasks: [synth_vqa]                                # optional: default the profile's tasks
    metric: {name: synth_vqa/overall_acc, mode: max}  # optional: default the first task's headline;
                                                      # a bare name ("overall_acc") means the first task's
    resources: {cpu: 1, gpu: 0}                       # per trial; {cpu: 1, gpu: 1, workers: 4}: 4 DDP workers
    scheduler: {name: fifo}                           # or {name: asha, grace_period: 1, ...}
    reference: {source: ..., ranking: [...], values: [...]}  # ranking: best first; a nested list ties
    alias: {model.mim.mask_ratio: img}                # optional: a factor's short name in run names
    plugins: [my_masking]                             # modules that register components of your own
                                                      # (importable, or next to the study file)

`load_spec(path)` returns a `StudySpec` or raises `SpecError` naming the file,
the key, its line, what was expected and the closest valid name. Values are
checked by building every trial's `Config`, so anything the config would reject
fails here, not in trial 7 of 8.
"""

from __future__ import annotations

import itertools
import math
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Discriminator, Field, Tag, ValidationError

from ablations.specfile import Problems, SpecError, Strict, closest, load_yaml, schema_errors
from m3ae.config import MAX_SEED, Config, ConfigError, apply_overrides, field_paths, profile, suggest_path
from m3ae.textfile import decode_utf8

ZIP_KEY = "zip"
# Paths a study sets through its own keys, never through base/factors.
_RESERVED_PATHS = {"seed": "seeds", "finetune.tasks": "tasks", "threads": "resources.cpu"}
# Numbers every trial produces besides its tasks' metrics.
COST_METRICS = ("cost/pretrain_seconds", "cost/finetune_seconds", "cost/flops")


# A study or search name names folders and files (trials/<name>/, reports/<name>.html,
# locks/<name>.lock): a plain name, no separators, not "." or ".." or a hidden file.
NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
# A study or search file is read only when it is a regular file of at most this many bytes.
MAX_FILE_BYTES = 1_000_000


Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]  # numpy's seed range


# --------------------------------------------------------------------------- the schema


class MetricSpec(Strict):
    name: str  # "<task>/<metric>", a cost metric, or a bare metric of the first task ("overall_acc")
    mode: Literal["max", "min"] = "max"


class Resources(Strict):
    """What a trial runs on. workers > 1: data-parallel (DDP) over that many processes, each with
    `cpu` CPUs and `gpu` GPUs (ablations.distributed); each trains on its share of every global batch."""

    cpu: float = Field(1.0, gt=0, allow_inf_nan=False)  # CPUs per trial (per worker); also its torch thread count
    gpu: float = Field(0.0, ge=0, allow_inf_nan=False)  # GPUs per trial (per worker)
    workers: int = Field(1, ge=1)  # data-parallel processes per trial: gloo on CPUs, nccl with a GPU each


class SchedulerSpec(Strict):
    name: Literal["fifo", "asha"] = "fifo"
    grace_period: int = Field(1, ge=1)  # ASHA: reports before a trial may be stopped
    reduction_factor: float = Field(2.0, gt=1)
    max_t: int = Field(100, ge=1)  # ASHA: most reports (evaluations) a trial makes


class DataSpec(Strict):
    pretrain: Optional[str] = None  # a DATASETS name, or several joined by "+"; None = the profile's
    root: Optional[str] = None  # folder with the real datasets


class ReferenceValue(Strict):
    setting: dict[str, Any]
    value: float


class Reference(Strict):
    """The paper's findings for the same settings (read by the dashboards)."""

    source: str
    note: str = ""
    metric: Optional[str] = None  # the paper's metric, e.g. "vqa_rad/overall_acc"
    # settings, best first; an entry that is a list holds settings the paper ranks equal
    ranking: list[Union[dict[str, Any], list[dict[str, Any]]]] = []
    values: list[ReferenceValue] = []


class AdaptiveSeeds(Strict):
    """Seeds go where the ranking is still open (ablations.sequential): every setting runs seeds
    0..start-1, then the leader and each setting not yet told apart from it get one more seed per
    round, up to `max`."""

    start: int = Field(ge=2)  # seeds every setting runs first; two are the fewest with a spread
    max: int = Field(le=100)  # the most seeds any setting gets (checked >= start)
    min_effect: float = Field(gt=0)  # smallest difference in the headline metric worth telling apart, in its units
    alpha: float = Field(0.05, gt=0, lt=0.5)  # error rate per comparison, over every look


# seeds: a list (fixed) or a mapping (adaptive); the tag keeps pydantic's messages about the form used
Seeds = Annotated[Union[Annotated[list[Seed], Field(min_length=1), Tag("fixed")], Annotated[AdaptiveSeeds, Tag("adaptive")]],
                  Discriminator(lambda v: "adaptive" if isinstance(v, (dict, AdaptiveSeeds)) else "fixed")]
_UNION_TAGS = ("fixed", "adaptive")


class StudySpec(Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=100)
    description: str = ""
    kind: Literal["study"] = "study"
    profile: str = "laptop"
    base: dict[str, Any] = {}
    factors: dict[str, Any] = {}
    seeds: Seeds = [0]
    data: DataSpec = DataSpec()
    tasks: Optional[list[str]] = Field(None, min_length=1)  # None: the profile's finetune.tasks
    metric: Optional[MetricSpec] = None  # None: the first task's headline metric
    resources: Resources = Resources()
    scheduler: SchedulerSpec = SchedulerSpec()
    reference: Optional[Reference] = None
    alias: dict[str, str] = {}  # factor path -> short name in run names ("model.mim.mask_ratio": img)
    max_trials: int = Field(64, ge=1, le=10_000)  # guard against a grid that explodes
    plugins: list[str] = []  # modules imported before any config is built (m3ae.plugins)

    # ---- seeds

    @property
    def adaptive(self) -> AdaptiveSeeds | None:
        return self.seeds if isinstance(self.seeds, AdaptiveSeeds) else None

    @property
    def initial_seeds(self) -> list[int]:
        """The seeds every setting runs: the fixed list, or adaptive seeds' first round 0..start-1."""
        return list(range(self.adaptive.start)) if self.adaptive else list(self.seeds)

    @property
    def max_seeds(self) -> int:
        return self.adaptive.max if self.adaptive else len(self.seeds)

    def seed_plan(self):
        """The plan the verdicts use (ablations.sequential.SeedPlan): fixed seeds are one look."""
        from ablations.sequential import SeedPlan

        if self.adaptive:
            a = self.adaptive
            return SeedPlan(a.start, a.max, a.min_effect, a.alpha)
        return SeedPlan(len(self.seeds), len(self.seeds))

    # ---- the grid

    @property
    def grid(self) -> dict[str, list]:
        """Factors crossed as a grid: {path: values}."""
        return {path: values for path, values in self.factors.items() if path != ZIP_KEY}

    @property
    def zip_groups(self) -> list[dict[str, list]]:
        """Groups of paths varied together: each group is {path: values} of equal lengths."""
        return list(self.factors.get(ZIP_KEY, []))

    @property
    def factor_paths(self) -> list[str]:
        return list(self.grid) + [p for group in self.zip_groups for p in group]

    def combinations(self) -> list[dict[str, Any]]:
        """Every factor setting {path: value}, grid order then zip order (no seeds)."""
        axes: list[list[dict]] = [[{path: v} for v in values] for path, values in self.grid.items()]
        for group in self.zip_groups:
            n = len(next(iter(group.values())))
            axes.append([{path: values[i] for path, values in group.items()} for i in range(n)])
        return [dict(kv for part in combo for kv in part.items()) for combo in itertools.product(*axes)]

    def fixed_overrides(self) -> dict[str, Any]:
        """Overrides shared by every trial: base, then the study's data, tasks and threads."""
        fixed = dict(self.base)
        if self.data.pretrain is not None:
            fixed["data.pretrain"] = self.data.pretrain
        if self.data.root is not None:
            fixed["data.root"] = self.data.root
        if self.tasks is not None:
            fixed["finetune.tasks"] = list(self.tasks)
        fixed["threads"] = max(1, int(math.ceil(self.resources.cpu)))
        return fixed

    def num_trials(self) -> int:
        """Counted, not expanded: a grid of 10^12 combinations is refused, not built."""
        sizes = [len(values) for values in self.grid.values()]
        sizes += [len(next(iter(group.values()))) for group in self.zip_groups if group]
        return math.prod(sizes) * self.max_seeds  # adaptive seeds: the most the race can run


# --------------------------------------------------------------------------- loading


def load_spec(path: str | Path, profile_name: str | None = None, data_root: str | None = None) -> StudySpec:
    """Read and fully validate a study file. `profile_name` replaces the study's profile
    and `data_root` its data root (how a laptop study becomes a paper-scale one)."""
    return parse_spec(read_file(path, "study"), str(path), profile_name, data_root)


def read_file(path: str | Path, what: str = "study") -> str:
    """The text of a study or search file. Only a regular file of at most MAX_FILE_BYTES of UTF-8
    is read: a FIFO would block, /dev/zero never ends, and a huge YAML costs minutes and
    gigabytes before its node count can be checked. Anything else is a SpecError naming the file."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file not found: {path}") from None
    except OSError as error:
        raise SpecError(f"{path}: cannot read the {what} file: {error.strerror or error}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SpecError(f"{path}: is a directory, expected a {what} YAML file")
    if not stat.S_ISREG(info.st_mode):
        raise SpecError(f"{path}: not a regular file (a pipe, device or socket); expected a {what} YAML file")
    if info.st_size > MAX_FILE_BYTES:
        raise SpecError(f"{path}: {info.st_size:,} bytes, more than the {MAX_FILE_BYTES:,} a {what} file may have "
                        "(a study is a few dozen lines)")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise SpecError(f"{path}: cannot read the {what} file: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:  # grew since stat
        raise SpecError(f"{path}: more than the {MAX_FILE_BYTES:,} bytes a {what} file may have")
    return decode_utf8(data, path, SpecError, f"a {what} file is UTF-8 YAML (re-encode it, e.g. iconv -f latin1 -t utf-8)")


def parse_spec(text: str, source: str = "<study>", profile_name: str | None = None,
               data_root: str | None = None) -> StudySpec:
    """Validate a study's text; the returned spec has its tasks and metric resolved."""
    data, lines = load_yaml(text, source)
    problems = Problems(source, lines)
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of study keys (name, factors, seeds, ...), got {data!r}")
    if data.get("kind") == "search":
        raise SpecError(f"{source}: kind: search is an Optuna search file; run it with `ablate search`")
    if profile_name is not None:
        data = {**data, "profile": profile_name}
    if data_root is not None:
        data = {**data, "data": {**(data.get("data") or {}), "root": str(data_root)}}
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as error:
        schema_errors(error, problems, StudySpec, _UNION_TAGS)
        problems.raise_if_any()
    load_plugins(spec.plugins, source, problems)
    problems.raise_if_any()
    spec = _check_semantics(spec, problems)
    problems.raise_if_any()
    return spec


def load_plugins(names: list[str], source: str, problems: Problems) -> None:
    """Import a file's plugin modules before any config names their components; a module is
    also looked for in the file's folder."""
    from m3ae.plugins import PluginError, load

    folder = Path(source).parent if Path(source).is_file() else None
    for i, name in enumerate(names):
        try:
            load([name], [folder] if folder else [])
        except PluginError as error:
            problems.add(("plugins", i), str(error))


def plugin_modules(spec) -> tuple[str, ...]:
    """Every plugin module a study's or search's trials need: its `plugins:`, then the modules
    that registered the components it names (installed entry-point plugins included), so
    workers import them and Ray ships them."""
    from m3ae.plugins import modules_named

    values = [spec.base, getattr(spec, "factors", {}), getattr(spec, "space", {}), getattr(spec, "enqueue", []),
              spec.data.model_dump(), spec.tasks]
    return tuple(dict.fromkeys([*spec.plugins, *modules_named(values)]))


# --------------------------------------------------------------------------- semantic checks


def _check_semantics(spec: StudySpec, problems: Problems) -> StudySpec:
    """Everything the schema cannot see; stops at the first layer that fails
    (no point building configs on top of an unknown profile). Returns the spec
    with its tasks and metric resolved against the profile."""
    base_cfg = base_config(spec, problems)
    if base_cfg is None:
        return spec
    if spec.tasks is None:
        spec = spec.model_copy(update={"tasks": list(base_cfg.finetune.tasks)})

    check_inputs(spec, problems, lambda: _check_factors(spec, problems), None if spec.adaptive else spec.seeds)
    if spec.adaptive is not None and spec.adaptive.max < spec.adaptive.start:
        problems.add(("seeds", "max"), f"must be at least start ({spec.adaptive.start}), got {spec.adaptive.max}")
    if problems.items:
        return spec

    spec = _resolve_metric(spec)
    _check_metric(spec, problems)
    _check_reference(spec, problems)
    _check_alias(spec, problems)
    n = spec.num_trials()
    if n > spec.max_trials:
        most = " at most" if spec.adaptive else ""
        problems.add(("factors",), f"the grid makes{most} {n} trials, more than max_trials {spec.max_trials}; "
                                   f"shrink the factors{' or seeds.max' if spec.adaptive else ''} or raise max_trials")
    if problems.items:
        return spec
    _check_configs(spec, base_cfg, problems)
    return spec


def base_config(spec, problems: Problems) -> Config | None:
    """The config of the spec's profile (a study's or a search's); None, with the problem noted,
    when there is no such profile."""
    try:
        return profile(spec.profile)
    except ConfigError as error:
        problems.add(("profile",), str(error))
        return None


def check_inputs(spec, problems: Problems, check_varied: Callable[[], None], seeds: list[int] | None) -> None:
    """What studies and searches check alike, in this order: the base's paths, what varies
    (`check_varied`: a study's factors, a search's space), the tasks, the pre-training datasets,
    and repeated seeds (`seeds`: None when they are adaptive)."""
    from m3ae import registry

    for path in spec.base:
        check_path(path, ("base", path), problems)
    check_varied()
    for i, task in enumerate(spec.tasks):
        if task not in registry.TASKS:
            problems.add(("tasks", i), registry.TASKS.unknown_message(task))
    if spec.data.pretrain is not None:
        for name in spec.data.pretrain.split("+"):
            if name not in registry.DATASETS:
                problems.add(("data", "pretrain"), registry.DATASETS.unknown_message(name))
    if seeds is not None and len(set(seeds)) != len(seeds):
        problems.add(("seeds",), f"seeds repeat: {seeds}")


def check_path(path: str, loc: tuple, problems: Problems) -> bool:
    if path in _RESERVED_PATHS:
        problems.add(loc, f"{path} is set by the study key {_RESERVED_PATHS[path]!r}, not here")
        return False
    if path not in field_paths():
        problems.add(loc, f"unknown config path {path!r}{suggest_path(path)}")
        return False
    return True


def _check_factors(spec: StudySpec, problems: Problems) -> None:
    for path, values in spec.grid.items():
        if check_path(path, ("factors", path), problems):
            _check_values(values, ("factors", path), problems)
    groups = spec.factors.get(ZIP_KEY, [])
    if not isinstance(groups, list):
        problems.add(("factors", ZIP_KEY), f"expected a list of groups ({{path: [values], ...}}), got {groups!r}")
        return
    seen = set(spec.grid)
    for g, group in enumerate(groups):
        loc = ("factors", ZIP_KEY, g)
        if not isinstance(group, dict) or len(group) < 2:
            problems.add(loc, f"expected a mapping of at least two paths to equally long value lists, got {group!r}")
            continue
        lengths = {}
        for path, values in group.items():
            if path in seen:
                problems.add(loc + (path,), f"{path} is varied twice (in the grid or another zip group)")
            seen.add(path)
            if check_path(path, loc + (path,), problems) and _check_values(values, loc + (path,), problems):
                lengths[path] = len(values)
        if len(set(lengths.values())) > 1:
            problems.add(loc, f"zipped lists must have the same length, got {lengths}")


def _check_values(values, loc: tuple, problems: Problems) -> bool:
    if not isinstance(values, list):
        problems.add(loc, f"expected a list of values, got {values!r}")
        return False
    if not values:
        problems.add(loc, "expected at least one value, got an empty list")
        return False
    return True


def _task_metrics(task_name: str) -> list[str]:
    from m3ae import registry

    task = registry.TASKS.get(task_name)
    if not hasattr(task, "metric_names"):  # a factory: build the task to read its metrics
        task = task()
    return list(task.metric_names)


def produced_metrics(tasks) -> list[str]:
    """Every final metric a trial with these tasks logs on its trial run."""
    return [f"{t}/{m}" for t in tasks for m in _task_metrics(t)] + list(COST_METRICS)


def _resolve_metric(spec: StudySpec) -> StudySpec:
    """No metric: the first task's headline; a bare name: that metric of the first task."""
    from m3ae import registry

    first = spec.tasks[0]
    if spec.metric is None:
        task = registry.TASKS.get(first)
        task = task if hasattr(task, "headline") else task()
        return spec.model_copy(update={"metric": MetricSpec(name=f"{first}/{task.headline}", mode=task.mode)})
    if "/" not in spec.metric.name:
        return spec.model_copy(update={"metric": spec.metric.model_copy(update={"name": f"{first}/{spec.metric.name}"})})
    return spec


def _check_metric(spec: StudySpec, problems: Problems) -> None:
    produced = produced_metrics(spec.tasks)
    if spec.metric.name not in produced:
        problems.add(("metric", "name"), f"no task of this study produces {spec.metric.name!r}: expected one of "
                                         f"{produced}{closest(spec.metric.name, produced)}")


def _check_reference(spec: StudySpec, problems: Problems) -> None:
    ref = spec.reference
    if ref is None:
        return
    for i, entry in enumerate(ref.ranking):
        for setting in entry if isinstance(entry, list) else [entry]:
            for path in setting:
                check_path(path, ("reference", "ranking", i, path), problems)
    for i, item in enumerate(ref.values):
        for path in item.setting:
            check_path(path, ("reference", "values", i, "setting", path), problems)
    if ref.metric is not None and "/" not in ref.metric:
        problems.add(("reference", "metric"), f"expected '<task>/<metric>', e.g. 'vqa_rad/overall_acc', got {ref.metric!r}")


def _check_alias(spec: StudySpec, problems: Problems) -> None:
    """Aliases name factors in run names: each must name a factor, and no two may be the same."""
    paths = spec.factor_paths
    for path, alias in spec.alias.items():
        if path not in paths:
            problems.add(("alias", path), f"not a factor of this study: expected one of {paths}{closest(path, paths)}")
        elif not alias or any(c in alias for c in " /\\"):
            problems.add(("alias", path), f"expected a short name without spaces or slashes, got {alias!r}")
    taken = [a for a in spec.alias.values()]
    for alias in {a for a in taken if taken.count(a) > 1}:
        problems.add(("alias",), f"{alias!r} names two factors: run names would not tell them apart")


def _check_configs(spec: StudySpec, base_cfg, problems: Problems) -> None:
    """Build configs layer by layer so an error points at the key that caused it:
    base alone, then each factor value on top of base, then every combination."""
    fixed, workers = spec.fixed_overrides(), spec.resources.workers
    try:
        cfg = apply_overrides(base_cfg, fixed)
    except ConfigError as error:
        problems.add(("base",), str(error))
        return
    if not check_resources(spec.resources, cfg, problems):
        return
    for path, values in spec.grid.items():
        for i, value in enumerate(values):
            _try(base_cfg, {**fixed, path: value}, ("factors", path, i), problems, workers=workers)
    for g, group in enumerate(spec.zip_groups):
        n = len(next(iter(group.values())))
        for i in range(n):
            setting = {path: values[i] for path, values in group.items()}
            loc = ("factors", ZIP_KEY, g, next(iter(group)), i)
            _try(base_cfg, {**fixed, **setting}, loc, problems, workers=workers)
    if problems.items:
        return
    for combo in spec.combinations():
        if not _try(base_cfg, {**fixed, **combo}, ("factors",), problems, combo, workers=workers):
            return


def check_data(configs, source: str | None = None) -> None:
    """The real datasets these configs read must be under their data.root (a missing root or folder:
    SpecError naming the path and the expected layout). `ablate validate`, `run` (a dry run too) and
    `search` call this; `load_spec` does not, so a study can be loaded and estimated on a machine
    without the data."""
    from m3ae import registry
    from m3ae.data.real.common import DataFormatError
    from m3ae.data.real.layout import check_layout

    seen = set()
    for cfg in configs:
        tasks = [registry.TASKS.get(name) for name in cfg.finetune.tasks]
        names = [(task if hasattr(task, "dataset") else task()).dataset for task in tasks]
        if cfg.pretrain.enabled:
            names += cfg.data.pretrain.split("+")
        for name in names:
            if (cfg.data.root, name) not in seen:
                seen.add((cfg.data.root, name))
                try:
                    check_layout(cfg.data.root, name)
                except DataFormatError as error:
                    raise SpecError(f"{source}: {error}" if source else str(error)) from None


def check_resources(resources: Resources, cfg, problems: Problems) -> bool:
    """Data-parallel trials (workers > 1) need whole GPUs per worker and batches that split
    into equal shards."""
    from m3ae.config import check_shardable

    if resources.workers > 1 and resources.gpu != int(resources.gpu):
        problems.add(("resources", "gpu"), f"must be a whole number of GPUs per worker when workers > 1 "
                                           f"(each DDP worker needs a GPU of its own), got {resources.gpu}")
        return False
    try:
        check_shardable(cfg, resources.workers, "resources.workers")
        return True
    except ConfigError as error:
        problems.add(("resources", "workers"), str(error))
        return False


def _try(base_cfg, overrides: dict, loc: tuple, problems: Problems, combo: dict | None = None,
         workers: int = 1) -> bool:
    try:
        cfg = apply_overrides(base_cfg, overrides)
        if workers > 1:
            from m3ae.config import check_shardable

            check_shardable(cfg, workers, "resources.workers")
        return True
    except ConfigError as error:
        prefix = f"the combination {combo} is invalid: " if combo else ""
        problems.add(loc, prefix + str(error))
        return False
