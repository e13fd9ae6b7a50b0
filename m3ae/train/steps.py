"""The training step both stages share: one optimizer step over a batch, and its bookkeeping.

    log = StepLog(stage, optimizer, parallel, callbacks, bar)
    out = log.run(step, batch, lambda: optimizer_step(...), numbers, started)
    log.flops_per_step   # counted on the first step

Pre-training and fine-tuning differ in what their forward returns and what they log;
the rest of a step (micro-batches, precision, the finiteness check, clipping, the lr
the step ran at, its FLOPs and wall time, the callbacks and the progress bar) is here.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from m3ae.train.accumulate import accumulation
from m3ae.train.flops import count_flops
from m3ae.train.optim import clip_gradients
from m3ae.train.runtime import autocast, check_finite


def optimizer_step(forward, optimizer, scheduler, batch, ocfg, stage: str, step: int,
                   loss_of: Callable[[Any], tuple[torch.Tensor, dict | None]]) -> list[tuple[float, Any]]:
    """Zero the gradients, run `forward` over the batch in micro-batches of `ocfg.micro_batch_size`
    (m3ae.train.accumulate) under `ocfg.precision`, back-propagate each one's loss weighted by
    its share, clip, step the optimizer and the schedule. `loss_of(output)` -> (the loss, its
    parts for the error message). Returns each micro-batch's (share, output)."""
    forward.train()
    optimizer.zero_grad(set_to_none=True)
    outs = []
    for part, share, sync in accumulation(forward, batch, ocfg.micro_batch_size):
        with sync:
            with autocast(ocfg.precision, part.images.device.type):
                out = forward(part)
            loss, parts = loss_of(out)
            check_finite(stage, step, loss, parts)
            (loss if share == 1 else loss * share).backward()
        outs.append((share, out))
    clip_gradients(optimizer, ocfg.grad_clip)
    optimizer.step()
    scheduler.step()
    return outs


class StepLog:
    """Around each step: the base lr it runs at, its FLOPs (counted on the first step: the
    others cost the same), its samples per second, and its numbers (averaged over the
    data-parallel processes) to the callbacks and the progress bar."""

    def __init__(self, stage: str, optimizer, parallel, callbacks, bar, flops_per_step: float = 0.0):
        self.stage, self.optimizer, self.parallel, self.callbacks, self.bar = stage, optimizer, parallel, callbacks, bar
        self.flops_per_step = flops_per_step

    def run(self, step: int, batch, train_step: Callable[[], Any], numbers: Callable[[Any], dict],
            started: float) -> Any:
        """Run `train_step()` on `batch` (the step began at `started`: pre-training counts fetching
        its batch); `numbers(output)`: what it logs besides lr and samples_per_s, its loss first."""
        group = self.optimizer.param_groups[0]
        lr = group["lr"] / group["lr_mult"]  # the base lr of this step, before the per-module multipliers
        if not self.flops_per_step:
            out, flops = count_flops(train_step)
            self.flops_per_step = flops * self.parallel.world_size  # every process's shard costs the same
        else:
            out = train_step()
        seconds = time.perf_counter() - started
        logged = self.parallel.mean({**numbers(out), "lr": lr, "samples_per_s": len(batch) / seconds})
        self.callbacks.on_step(self.stage, step, logged)
        self.bar.update(1, loss=next(iter(logged.values())))
        return out


class Stopwatch:
    """Adds up the wall time of its `with` blocks (a stage's evaluations, out of its total)."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds += time.perf_counter() - self._start
