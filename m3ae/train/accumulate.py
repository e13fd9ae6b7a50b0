"""Gradient accumulation: one optimiser step over a batch, computed in micro-batches.

`pretrain.batch_size` / `finetune.batch_size` stay the effective batch (what the
learning rate and the schedule are tuned for); `micro_batch_size` is how many of
its examples go through one forward and backward, so batch 256 fits on one GPU.
Each micro-batch's loss is weighted by its share of the batch, so for a loss that
is a mean over examples the accumulated gradient is the big batch's gradient.

What does not split exactly, by nature: whatever a loss draws within its batch.
ITM negatives and retrieval's in-batch negatives come from the micro-batch (as the
official code's come from each GPU's 32 examples); MLM's mean over masked tokens
becomes a mean of micro-batch means; masks are drawn per forward.
"""

from __future__ import annotations

import contextlib
from dataclasses import fields
from typing import Iterator

from m3ae.batch import Batch


def micro_batches(batch: Batch, size: int) -> list[Batch]:
    """Consecutive slices of at most `size` examples; size 0 (or >= the batch) keeps the batch whole."""
    n = len(batch)
    if size <= 0 or size >= n:
        return [batch]
    return [Batch(**{f.name: None if getattr(batch, f.name) is None else getattr(batch, f.name)[lo:lo + size]
                     for f in fields(batch)})
            for lo in range(0, n, size)]


def accumulation(forward, batch: Batch, size: int) -> Iterator[tuple[Batch, float, contextlib.AbstractContextManager]]:
    """(micro-batch, its share of the batch, the context its forward and backward run in).

    In DDP only the last micro-batch's backward all-reduces gradients (`no_sync` before):
    one reduction per step, as without accumulation."""
    parts = micro_batches(batch, size)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        sync = contextlib.nullcontext() if last or not hasattr(forward, "no_sync") else forward.no_sync()
        yield part, len(part) / len(batch), sync
