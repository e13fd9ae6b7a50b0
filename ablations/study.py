"""Expand a study into trials: profile config -> base -> one factor combination -> seed.

Each trial's id is a hash of its resolved config (`m3ae.keys.trial_id`), so the
same study expands to the same ids every time and a re-run can skip what is
done. Trials that share a pre-train key share one pre-training.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ablate_common.tables import render_table
from ablations.spec import SpecError, StudySpec, plugin_modules
from m3ae.config import Config, apply_overrides, from_dict, profile, to_dict
from m3ae.keys import pretrain_key, trial_id
from m3ae.plugins import load as load_plugins


@dataclass(frozen=True)
class Trial:
    trial_id: str
    seed: int
    factors: dict[str, Any]  # {dotted path: value} of this trial's factor setting
    config: Config
    pretrain_key: str
    plugins: tuple[str, ...] = ()  # the study's plugin modules (ablations.spec.plugin_modules): a worker imports them first

    def to_payload(self) -> dict:
        """A plain dict that crosses to a Ray worker."""
        return {"trial_id": self.trial_id, "seed": self.seed, "factors": self.factors,
                "config": to_dict(self.config), "pretrain_key": self.pretrain_key, "plugins": list(self.plugins)}

    @classmethod
    def from_payload(cls, payload: dict) -> Trial:
        """In a worker: the plugins are imported before the config that may name their components."""
        plugins = tuple(payload.get("plugins", ()))
        load_plugins(plugins)
        return cls(payload["trial_id"], payload["seed"], dict(payload["factors"]),
                   from_dict(payload["config"]), payload["pretrain_key"], plugins)


def trial_pretrain_key(cfg: Config, workers: int = 1) -> str:
    """The pre-train cache key of a trial. A data-parallel pre-training draws its masks and ITM
    negatives per worker shard, so it is an entry of its own (the single-process key, suffixed)."""
    key = pretrain_key(cfg)
    return key if workers == 1 else f"{key}-w{workers}"


def expand(spec: StudySpec, seeds: list[int] | range | None = None) -> list[Trial]:
    """The trials of a validated study, combinations in grid order, seeds innermost. `seeds`
    default: the study's fixed seeds, or adaptive seeds' first round (0..start-1)."""
    base_cfg = profile(spec.profile)
    fixed = spec.fixed_overrides()
    modules = plugin_modules(spec)
    trials = []
    for combo in spec.combinations():
        for seed in (spec.initial_seeds if seeds is None else seeds):
            cfg = apply_overrides(base_cfg, {**fixed, **combo, "seed": seed})
            trials.append(Trial(trial_id(cfg), seed, combo, cfg, trial_pretrain_key(cfg, spec.resources.workers),
                                modules))
    ids = Counter(t.trial_id for t in trials)
    twins = [t.factors for t in trials if ids[t.trial_id] > 1]
    if twins:
        raise SpecError(f"study {spec.name}: these factor settings resolve to the same config: {twins}")
    return trials


def format_value(value: Any) -> str:
    return "-" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def short_path(path: str) -> str:
    """'model.mim.mask_ratio' -> 'mim.mask_ratio' (table headers)."""
    parts = path.split(".")
    return ".".join(parts[-2:])


def trial_table(spec: StudySpec, trials: list[Trial]) -> str:
    """The dry-run table: id, factor values, seed, and which pre-training each trial shares."""
    paths = spec.factor_paths
    uses = Counter(t.pretrain_key for t in trials if t.config.pretrain.enabled)
    header = ["trial", *[short_path(p) for p in paths], "seed", "pretrain"]
    rows = []
    for t in trials:
        if not t.config.pretrain.enabled:
            shared = "none (from scratch)"
        else:
            shared = t.pretrain_key + (f" (shared by {uses[t.pretrain_key]})" if uses[t.pretrain_key] > 1 else "")
        rows.append([t.trial_id, *[format_value(t.factors[p]) for p in paths], str(t.seed), shared])
    pretrains = len(uses)
    footer = (f"{len(trials)} trials, {pretrains} pre-training{'s' if pretrains != 1 else ''}, "
              f"profile {spec.profile}, tasks {', '.join(spec.tasks)}, metric {spec.metric.name} ({spec.metric.mode})")
    if spec.adaptive:
        a = spec.adaptive
        footer += (f"\nadaptive seeds: the first round (seeds 0..{a.start - 1}); then one more seed per round for the "
                   f"leader and each setting not yet told apart from it (min_effect {a.min_effect:g}), up to "
                   f"{a.max} seeds: at most {spec.num_trials()} trials")
    if trials:
        footer += "\n" + finetune_settings(trials[0].config, spec.tasks)
    return render_table(header, rows) + "\n" + footer


def finetune_settings(cfg, tasks) -> str:
    """How each task fine-tunes (finetune.per_task applied), one line per task: the settings
    the paper's code varies by task, so a dry run shows what each task will run with."""
    from m3ae.config import task_config

    lines = ["fine-tuning per task:"]
    for task in tasks:
        t = task_config(cfg, task)
        f = t.finetune
        micro = f" (micro-batches of {f.micro_batch_size})" if f.micro_batch_size else ""
        lines.append(f"  {task}: batch {f.batch_size}{micro}, {f.epochs} epochs, lr {f.lr:g} (fusion x{f.fusion_lr_mult:g}, "
                     f"heads x{f.head_lr_mult:g}), images {t.model.vision.image_size} px, text {t.model.text.max_length} tokens")
    return "\n".join(lines)
