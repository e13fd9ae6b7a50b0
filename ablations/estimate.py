"""What a study will cost before it runs: trials, distinct pre-trainings, FLOPs, wall time.

FLOPs are counted, not guessed: one pre-training step and one fine-tuning step of
each distinct model are run on a small synthetic batch under torch's FLOP counter
and scaled linearly by batch size and step count. The same small step is timed
on this machine, which gives the wall-time estimate (it ignores evaluation and
data loading, and larger batches usually run a little more efficiently, so treat
it as a planning number, not a promise).

    est = estimate_study(spec)
    print(format_estimate(est))

On a study that has results (or a pilot), `estimate_power` says per comparison how many seeds
would detect `min_effect` with 80% power given the measured paired spread, and what it costs.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch

from ablations.study import Trial, expand
from m3ae.config import task_config

# Planning assumption for GPU-hours: an A100's dense bf16 peak at a typical 40% utilisation.
GPU_NAME = "A100 (bf16, 40% utilisation)"
GPU_FLOPS = 312e12 * 0.40


@dataclass(frozen=True)
class StepCost:
    """FLOPs and seconds of one optimizer step at the config's batch size (scaled from a probe)."""

    flops: float
    seconds: float


@dataclass
class StudyEstimate:
    name: str
    profile: str
    trials: int
    pretrainings: int
    pretrain_flops: float = 0.0
    finetune_flops: float = 0.0
    pretrain_seconds: float = 0.0  # on this machine, one trial at a time
    finetune_seconds: float = 0.0
    eval_flops: float = 0.0  # fine-tuning's validation passes and test pass
    eval_seconds: float = 0.0
    per_trial: list[dict] = field(default_factory=list)
    max_trials: int | None = None  # adaptive seeds: the most the race can run (the rest is its first round)

    @property
    def flops(self) -> float:
        return self.pretrain_flops + self.finetune_flops + self.eval_flops

    @property
    def seconds(self) -> float:
        return self.pretrain_seconds + self.finetune_seconds + self.eval_seconds

    @property
    def gpu_hours(self) -> float:
        return self.flops / GPU_FLOPS / 3600


def _probe_batch(cfg, batch_size: int):
    """A synthetic batch with the shapes `cfg` trains on (token ids avoid the special ids 0-4)."""
    from m3ae.batch import Batch

    size, length = cfg.model.vision.image_size, cfg.model.text.max_length
    ids = torch.randint(5, cfg.data.vocab_size, (batch_size, length))
    return Batch(images=torch.randn(batch_size, 3, size, size), input_ids=ids,
                 attention_mask=torch.ones_like(ids), word_ids=torch.arange(length).expand(batch_size, -1).clone(),
                 image_ids=torch.arange(batch_size))


def _probe_vocab(cfg):
    from m3ae.batch import TextVocab

    return TextVocab(size=cfg.data.vocab_size, pad_id=0, mask_id=4, cls_id=2, sep_id=3, special_ids=(0, 1, 2, 3, 4))


def _measure(step, probe_size: int, batch_size: int) -> StepCost:
    """Count one step's FLOPs, time a second one, scale both to `batch_size`."""
    from m3ae.train.flops import count_flops

    _, flops = count_flops(step)
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    scale = batch_size / probe_size
    return StepCost(flops * scale, seconds * scale)


def _step_cost(cfg, batch_size: int, loss, probe_size: int) -> StepCost:
    """Build the model `cfg` describes and cost one backward of `loss(model, batch)`."""
    from m3ae.model import build_model

    torch.manual_seed(0)
    probe_size = min(probe_size, batch_size)
    model = build_model(cfg.model, _probe_vocab(cfg))
    batch = _probe_batch(cfg, probe_size)

    def step():
        model.zero_grad(set_to_none=True)
        loss(model, batch).backward()

    return _measure(step, probe_size, batch_size)


def pretrain_step_cost(cfg, probe_size: int = 4) -> StepCost:
    """A pre-training step: every enabled objective's pass, forward and backward."""
    return _step_cost(cfg, cfg.pretrain.batch_size, lambda model, batch: model(batch).loss, probe_size)


def finetune_step_cost(cfg, probe_size: int = 4) -> StepCost:
    """Fine-tuning is dominated by one unmasked fused pass (+ backward); the head is small."""
    def loss(model, batch):
        return model.encode(batch.images, batch.input_ids, batch.attention_mask).pooled.sum()

    return _step_cost(cfg, cfg.finetune.batch_size, loss, probe_size)


def eval_example_costs(cfg, probe_size: int = 8) -> tuple[StepCost, StepCost]:
    """Evaluation forwards (no gradients), per example: (fusion + poolers, which run for every
    example; both unimodal encoders, which run once per distinct image and question)."""
    from m3ae.model import build_model

    torch.manual_seed(0)
    model = build_model(cfg.model, _probe_vocab(cfg)).eval()
    batch = _probe_batch(cfg, probe_size)
    with torch.inference_mode():
        images = model.encode_image(batch.images)
        texts = model.encode_text(batch.input_ids, batch.attention_mask)
        fuse = _measure(lambda: model.pool(model.fuse(images, texts, batch.attention_mask)), probe_size, 1)
        encode = _measure(lambda: (model.encode_image(batch.images), model.encode_text(batch.input_ids,
                                                                                        batch.attention_mask)),
                          probe_size, 1)
    return fuse, encode


def eval_passes(cfg) -> int:
    """Validation passes of a fine-tuning run (m3ae.train.finetune.is_eval_epoch; one when it only evaluates)."""
    from m3ae.train.finetune import is_eval_epoch

    if cfg.finetune.evaluate_only:
        return 1
    return sum(is_eval_epoch(epoch, cfg.finetune) for epoch in range(1, cfg.finetune.epochs + 1))


def _synth_sizes(cfg, task: str) -> tuple[str, dict[str, int], int] | None:
    """(dataset, images per split, texts per image) of a synthmed task; None for real data
    (unknown until read)."""
    from m3ae.data.synthmed.tasks import split_sizes
    from m3ae.train import get_task

    dataset = get_task(task).dataset
    if not dataset.startswith("synth_"):
        return None
    per_image = cfg.data.synth_questions_per_image if dataset == "synth_vqa" else 1
    return dataset, split_sizes(dataset, cfg.data), per_image


def eval_examples(cfg, task: str) -> tuple[int, int] | None:
    """(fused examples, images) of the validation and test splits together (synthmed; None for real
    data). Each image's questions count as distinct texts: an upper bound, they repeat."""
    sizes = _synth_sizes(cfg, task)
    if sizes is None:
        return None
    dataset, images, per_image = sizes
    if dataset == "synth_irtr":  # retrieval scores every image against every text
        return images["val"] ** 2 + images["test"] ** 2, images["val"] + images["test"]
    return (images["val"] + images["test"]) * per_image, images["val"] + images["test"]


def finetune_examples(cfg, task: str) -> int | None:
    """Training examples of a task (synthmed: from the config; real data: unknown until read)."""
    sizes = _synth_sizes(cfg, task)
    if sizes is None:
        return None
    _, images, per_image = sizes
    return int(images["train"] * per_image * cfg.finetune.train_fraction)


def estimate_study(spec, progress=print) -> StudyEstimate:
    """Expand the study and cost every distinct model once (trials that share a
    model architecture and batch size share a probe)."""
    trials: list[Trial] = expand(spec)
    pretrain_keys = {t.pretrain_key for t in trials if t.config.pretrain.enabled}
    est = StudyEstimate(spec.name, spec.profile, len(trials), len(pretrain_keys),
                        max_trials=spec.num_trials() if spec.adaptive else None)
    probes: dict[tuple, tuple[StepCost, StepCost, tuple[StepCost, StepCost]]] = {}
    seen_pretrain: set[str] = set()
    for trial in trials:
        cfg = trial.config
        shape = (repr(cfg.model), cfg.data.vocab_size, cfg.pretrain.batch_size, cfg.finetune.batch_size)
        if shape not in probes:
            progress(f"  probing a step of {trial.trial_id} ({len(probes) + 1}) ...")
            probes[shape] = (pretrain_step_cost(cfg), finetune_step_cost(cfg), eval_example_costs(cfg))
        pre, fine, (fuse, encode) = probes[shape]
        row = {"trial_id": trial.trial_id, **trial.factors, "seed": trial.seed}
        if cfg.pretrain.enabled and trial.pretrain_key not in seen_pretrain:  # shared pre-trainings cost once
            seen_pretrain.add(trial.pretrain_key)
            est.pretrain_flops += pre.flops * cfg.pretrain.steps
            est.pretrain_seconds += pre.seconds * cfg.pretrain.steps
        for task in cfg.finetune.tasks:
            tcfg = task_config(cfg, task)  # the task's own batch and epochs (probed at the base sizes)
            examples = finetune_examples(tcfg, task)
            if examples is None:
                continue
            steps = 0 if tcfg.finetune.evaluate_only else -(-examples // tcfg.finetune.batch_size) * tcfg.finetune.epochs
            est.finetune_flops += fine.flops * steps
            est.finetune_seconds += fine.seconds * steps
            fused, images = eval_examples(cfg, task)
            # validation passes over the val split, one pass over test: val + test per pass, halved
            passes = (eval_passes(tcfg) + 1) / 2
            est.eval_flops += passes * (fused * fuse.flops + images * encode.flops)
            est.eval_seconds += passes * (fused * fuse.seconds + images * encode.seconds)
        row["pretrain_step_gflop"] = pre.flops / 1e9
        est.per_trial.append(row)
    return est


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _adaptive_lines(est: StudyEstimate) -> list[str]:
    if not est.max_trials:
        return []
    most = _duration(est.seconds * est.max_trials / est.trials)
    line = (f"  adaptive seeds:     at most {est.max_trials} trials, ~{most} of compute if every comparison "
            f"stays undecided to the last seed")
    return [line]


def format_estimate(est: StudyEstimate, concurrent: int = 1) -> str:
    lines = [
        f"study {est.name!r} at profile {est.profile}",
        f"  trials:             {est.trials}",
        f"  pre-trainings:      {est.pretrainings} (trials that share a pre-train key share one)",
        f"  FLOPs:              {est.flops:.3g} (pre-train {est.pretrain_flops:.3g}, fine-tune {est.finetune_flops:.3g}, "
        f"evaluation {est.eval_flops:.3g})",
        f"  on this machine:    ~{_duration(est.seconds)} of compute"
        + (f", ~{_duration(est.seconds / concurrent)} with {concurrent} trials side by side" if concurrent > 1 else "")
        + (" for the first round" if est.max_trials else ""),
        f"  on GPUs:            ~{est.gpu_hours:.2g} GPU-hours on an {GPU_NAME}",
        *_adaptive_lines(est),
        "  (FLOPs counted on one real step and scaled; data loading not included;"
        " fine-tuning on real datasets is left out until the data is read)",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- power per comparison

POWER = 0.8


def seeds_for_power(spread: float, effect: float, alpha: float = 0.05, power: float = POWER,
                    limit: int = 1000) -> int | None:
    """The fewest seeds whose paired t-test at `alpha` (two-sided) detects a difference of `effect`
    with probability `power`, when the paired differences have sd `spread`. None above `limit`."""
    from scipy import stats

    if spread <= 0:
        return 2
    for n in range(2, limit + 1):
        critical = stats.t.ppf(1 - alpha / 2, n - 1)
        if stats.nct.sf(critical, n - 1, effect / spread * n ** 0.5) >= power:
            return n
    return None


@dataclass(frozen=True)
class ComparisonPower:
    setting: dict
    against: dict  # the leader
    pairs: int  # common seeds measured
    spread: float | None  # sd of the paired differences
    needed: int | None  # seeds per setting for 80% power at min_effect (None: more than 1000, or unknown)
    more_trials: int  # trials still to run, on both sides, to reach `needed`


@dataclass
class PowerEstimate:
    min_effect: float
    alpha: float
    comparisons: list[ComparisonPower]
    trial_seconds: float | None  # mean wall time of a finished trial
    slots: int  # trials side by side
    more_trials: int = 0  # to settle every comparison (the leader counted once)

    @property
    def seconds(self) -> float | None:
        if self.trial_seconds is None:
            return None
        return -(-self.more_trials // max(1, self.slots)) * self.trial_seconds


def estimate_power(spec, values: list[dict[int, float]], trial_seconds: list[float], min_effect: float,
                   slots: int = 1) -> PowerEstimate:
    """Per comparison (each setting against the leader): the measured paired spread and the seeds
    that would detect `min_effect` with 80% power; what running them would cost."""
    from ablations.sequential import compare

    plan = spec.seed_plan()
    lead, comparisons = compare(values, spec.metric.mode, plan)
    combos = spec.combinations()
    rows, wanted = [], {}
    for c in comparisons:
        diffs = list(c.differences.values())
        spread = statistics.stdev(diffs) if len(diffs) >= 2 else None
        needed = seeds_for_power(spread, min_effect, plan.alpha) if spread is not None else None
        more = 0
        if needed is not None:
            more = max(0, needed - len(values[c.setting])) + max(0, needed - len(values[lead]))
            wanted[c.setting] = max(wanted.get(c.setting, 0), needed)
            wanted[lead] = max(wanted.get(lead, 0), needed)
        rows.append(ComparisonPower(combos[c.setting], combos[lead], c.seeds, spread, needed, more))
    seconds = statistics.mean(trial_seconds) if trial_seconds else None
    total = sum(max(0, n - len(values[s])) for s, n in wanted.items())
    return PowerEstimate(min_effect, plan.alpha, rows, seconds, slots, total)


def format_power(spec, est: PowerEstimate) -> str:
    from ablate_common.tables import render_table
    from ablations.verdicts import label

    if not est.comparisons:
        return "power: nothing to compare yet (one setting, or no finished trials)"
    per_trial = est.trial_seconds
    rows = []
    for c in est.comparisons:
        cost = "-" if per_trial is None or c.needed is None else _duration(c.more_trials * per_trial)
        rows.append([label(c.setting), label(c.against), str(c.pairs),
                     "-" if c.spread is None else f"{c.spread:.2f}",
                     "-" if c.needed is None else str(c.needed), str(c.more_trials) if c.needed else "-", cost])
    header = ["setting", "vs leader", "pairs", "paired sd", f"seeds for {POWER:.0%} power", "more trials", "time"]
    title = (f"power to tell apart {est.min_effect:g} on {spec.metric.name} (paired t-test at alpha {est.alpha:g}, "
             "from the measured paired spread):")
    lines = [title, render_table(header, rows)]
    if est.seconds is not None:
        lines.append(f"  to settle every comparison: {est.more_trials} more trials, ~{_duration(est.seconds)} "
                     f"with {est.slots} side by side (a trial took {_duration(per_trial)})")
    lines.append("  (a spread from 2-3 pairs is itself uncertain; adaptive seeds stop early when a difference "
                 "is clear, fixed seeds of this size do not)")
    return "\n".join(lines)
