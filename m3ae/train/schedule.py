"""Learning-rate schedule: linear warm-up, then linear or cosine decay to zero (or constant).

A `LambdaLR` multiplies each group's own lr (base lr x role multiplier) by the
same factor, so the role ratios hold at every step.
"""

from __future__ import annotations

import functools
import math

import torch


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Factor applied to the lr at optimizer step `step` (0-based, before that step).

    Warm-up rises linearly to 1 over `warmup_steps` (never 0, so the first step
    learns); then linear / cosine decay to 0 at `total_steps`, or constant.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr schedule {schedule!r}: expected linear, cosine or constant")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up for `cfg.warmup_frac` of `total_steps`, then `cfg.schedule`."""
    warmup = int(round(cfg.warmup_frac * total_steps))
    factor = functools.partial(lr_factor, total_steps=total_steps, warmup_steps=warmup, schedule=cfg.schedule)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
