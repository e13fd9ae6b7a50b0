"""Pre-training: the three objectives on image-text pairs, with evaluation, pictures and checkpoints.

    result = pretrain(cfg, out_dir, cache_dir, callbacks=[...])
    result.checkpoint   # out_dir / "checkpoint.pt": model + optimizer + scheduler + step + RNG + config

A plain loop (nanoGPT's train.py in spirit): batch -> forward (the model masks
and computes its losses) -> backward -> clip -> AdamW step -> lr step. Every
`eval_every` steps and at the end: validation losses -> on_eval, a
reconstruction PNG -> on_artifact, a checkpoint. Calling `pretrain` again on
the same out_dir resumes from the checkpoint and gives the same weights as an
uninterrupted run.

`parallel` runs the loop as one process of a data-parallel group (m3ae.train.distributed:
each process trains on its shard of every global batch, DDP averages the gradients, rank 0
writes and reports); the default is the plain single-process loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from m3ae.config import ConfigError, flatten, from_dict
from m3ae.keys import pretrain_view
from m3ae.train.callbacks import CallbackList
from m3ae.train.checkpoint import (CheckpointMismatchError, flat_differences, load_checkpoint,
                                  load_model_weights, save_checkpoint, set_rng_state)
from m3ae.train.distributed import SINGLE, DataParallel
from m3ae.train.evaluate import evaluate_pretrain, save_reconstructions
from m3ae.train.optim import build_optimizer
from m3ae.train.progress import Progress
from m3ae.train.runtime import maybe_compile, seed_everything
from m3ae.train.schedule import build_scheduler
from m3ae.train.steps import StepLog, Stopwatch, optimizer_step

if TYPE_CHECKING:
    from m3ae.model.m3ae import M3AEOutput

STAGE = "pretrain"
CHECKPOINT = "checkpoint.pt"


@dataclass
class PretrainResult:
    checkpoint: Path  # the final checkpoint (fine-tuning starts here)
    metrics: dict  # final validation numbers: val_loss, val_mim_loss, val_mlm_acc, ...
    seconds: float  # wall time of the training loop in this call
    flops: float  # training FLOPs: counted on one step x steps
    eval_seconds: float = 0.0  # of `seconds`, validation, pictures and checkpoints


class BatchStream:
    """Endless training batches: epoch e uses a loader seeded by (seed, e), so the
    order at any step is known and a resumed run can skip to it."""

    def __init__(self, dataset, cfg, start_step: int):
        from m3ae.data import make_loader

        self._make = lambda epoch: make_loader(dataset, cfg.pretrain.batch_size, train=True, cfg=cfg,
                                               seed=cfg.seed * 100_003 + epoch)
        first = self._make(0)
        self.steps_per_epoch = len(first)
        if self.steps_per_epoch == 0:
            raise ConfigError(f"pretrain.batch_size: {cfg.pretrain.batch_size} is larger than the "
                              f"pre-training set ({len(dataset)} pairs)")
        self.epoch, skip = divmod(start_step, self.steps_per_epoch)
        self._iter = iter(first if self.epoch == 0 else self._make(self.epoch))
        for _ in range(skip):  # resuming mid-epoch: replay the order, drop the batches
            next(self._iter)

    def __next__(self):
        try:
            return next(self._iter)
        except StopIteration:
            self.epoch += 1
            self._iter = iter(self._make(self.epoch))
            return next(self._iter)


def build_pretraining(cfg, cache_dir: Path):
    """Tokenizer, vocabulary, train/val sets and a freshly initialised model for `cfg`."""
    from m3ae.data import build_dataset, build_tokenizer, text_vocab
    from m3ae.model import build_model

    tokenizer = build_tokenizer(cfg, cache_dir)
    train_set = build_dataset(cfg.data.pretrain, "train", cfg, tokenizer, cache_dir)
    val_set = build_dataset(cfg.data.pretrain, "val", cfg, tokenizer, cache_dir)
    model = build_model(cfg.model, text_vocab(tokenizer))
    return model, train_set, val_set


def pretrain(cfg, out_dir: Path, cache_dir: Path, callbacks=(), *, max_steps: int | None = None,
             parallel: DataParallel = SINGLE) -> PretrainResult:
    """Pre-train `cfg.model` on `cfg.data.pretrain` for `cfg.pretrain.steps` steps.

    Resumes from `out_dir/checkpoint.pt` when it exists. `max_steps` stops early
    (checkpoint written) so that a later call continues: pausing, and the resume test.
    `parallel`: this process's place in a data-parallel group (default: a single process).
    """
    pcfg = cfg.pretrain
    if not pcfg.enabled:
        raise ConfigError("pretrain.enabled is false: there is nothing to pre-train; "
                          "fine-tune from scratch with finetune(..., checkpoint=None)")
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    callbacks = CallbackList(callbacks if parallel.is_main else ())
    seed_everything(cfg.seed, cfg.threads)

    model, train_set, val_set = build_pretraining(cfg, cache_dir)
    model = parallel.place(model)
    optimizer = build_optimizer(model.param_groups_by_role(), pcfg, model.parameters())
    scheduler = build_scheduler(optimizer, pcfg, pcfg.steps)
    ckpt_path = out_dir / CHECKPOINT
    resumed = _resume(ckpt_path, cfg, model, optimizer, scheduler)
    step = resumed.get("step", 0)
    stream = BatchStream(train_set, cfg, step)
    if resumed:
        set_rng_state(resumed["rng"])  # after the skip: batches and masks continue exactly
    parallel.agree(step, "the step to resume from")
    parallel.seed(cfg.seed, step)
    forward = maybe_compile(parallel.wrap(model), cfg.compile)
    last_step = min(pcfg.steps, max_steps) if max_steps else pcfg.steps

    def checkpoint(step: int, flops_per_step: float) -> dict:
        """Validation and pictures, then the checkpoint (the plain model's weights: no DDP prefix)."""
        metrics = _evaluate(model, val_set, cfg, step, out_dir, callbacks, parallel.is_main)
        if parallel.is_main:
            save_checkpoint(ckpt_path, model=model, cfg=cfg, step=step, optimizer=optimizer, scheduler=scheduler,
                            metrics=metrics, stage=STAGE, flops_per_step=float(flops_per_step))
        return metrics

    callbacks.on_stage_start(STAGE, last_step)
    metrics = dict(resumed.get("metrics", {}))
    start, evaluating = time.perf_counter(), Stopwatch()
    with Progress(last_step, STAGE, initial=step, enabled=None if parallel.is_main else False) as bar:
        log = StepLog(STAGE, optimizer, parallel, callbacks, bar, resumed.get("flops_per_step", 0.0))
        while step < last_step:
            step += 1
            started = time.perf_counter()
            batch = next(stream)  # the global batch; this process trains on its shard
            shard = parallel.shard(batch)
            log.run(step, batch, lambda: _train_step(forward, optimizer, scheduler, shard, pcfg, step), _numbers,
                    started)
            if step == last_step or (pcfg.eval_every and step % pcfg.eval_every == 0):
                with evaluating:
                    metrics = checkpoint(step, log.flops_per_step)
    seconds = time.perf_counter() - start
    if step >= pcfg.steps:
        callbacks.on_end(STAGE, metrics)
    return PretrainResult(checkpoint=ckpt_path, metrics=metrics, seconds=seconds,
                          flops=float(log.flops_per_step) * pcfg.steps, eval_seconds=evaluating.seconds)


def _resume(path: Path, cfg, model, optimizer, scheduler) -> dict:
    """The checkpoint of an interrupted run of the same pre-training, loaded into the model,
    optimizer and schedule ({} when there is none: a fresh start)."""
    if not path.exists():
        return {}
    state = load_checkpoint(path)
    _check_same_run(state, cfg, path)
    load_model_weights(model, state, cfg, source=str(path))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state


def _numbers(out: M3AEOutput) -> dict[str, float]:
    """What a pre-training step logs: the loss, each objective's loss and metrics."""
    return {"loss": out.loss.item(), **{k: v.item() for k, v in out.losses.items()}, **out.metrics}


def _check_same_run(state: dict, cfg, path: Path) -> None:
    """Resuming is only exact for the same pre-training settings: refuse anything else."""
    # what is compared is the pre-train cache key's view: fine-tuning settings may differ
    diffs = flat_differences(flatten(pretrain_view(from_dict(state["config"]))), flatten(pretrain_view(cfg)))
    if diffs:
        raise CheckpointMismatchError(f"{path} belongs to another pre-training run ({'; '.join(diffs)}); "
                                      f"use a fresh output folder")


def _train_step(forward, optimizer, scheduler, batch, pcfg, step: int) -> M3AEOutput:
    """`forward`: the model, or the model in DDP (its backward then averages the gradients).
    The batch goes through in micro-batches of `pcfg.micro_batch_size` (m3ae.train.accumulate);
    the returned losses and metrics are their share-weighted means."""
    outs = optimizer_step(forward, optimizer, scheduler, batch, pcfg, STAGE, step, lambda out: (out.loss, out.losses))
    return outs[0][1] if len(outs) == 1 else _weighted(outs)


def _weighted(outs: list[tuple[float, M3AEOutput]]) -> M3AEOutput:
    """One step's output from its micro-batches' (share, output) pairs."""
    from m3ae.model.m3ae import M3AEOutput

    mean = lambda values: sum(share * value for share, value in values)  # noqa: E731
    first = outs[0][1]
    return M3AEOutput(loss=mean((s, o.loss.detach()) for s, o in outs),
                      losses={k: mean((s, o.losses[k].detach()) for s, o in outs) for k in first.losses},
                      metrics={k: mean((s, o.metrics[k]) for s, o in outs) for k in first.metrics})


def _evaluate(model, val_set, cfg, step: int, out_dir: Path, callbacks, writes: bool = True) -> dict:
    metrics = evaluate_pretrain(model, val_set, cfg)
    callbacks.on_eval(STAGE, step, metrics)
    if cfg.model.mim.enabled and writes:
        png = save_reconstructions(model, val_set, cfg, out_dir / "reconstructions" / f"step_{step}.png")
        callbacks.on_artifact(STAGE, png)
    return metrics
