"""FLOPs: counted, not estimated (torch.utils.flop_counter on one real step),
and the machine's dense matmul FLOP/s, measured, to turn FLOP/s into utilisation."""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable[[], object]) -> tuple[object, int]:
    """Run `fn()` once under a FLOP counter; returns (its result, FLOPs).

    Counts matmuls / convolutions / attention (what dominates a transformer),
    forward and backward if `fn` calls backward.
    """
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, counter.get_total_flops()


def matmul_peak_flops(n: int = 1024, repeats: int = 20, dtype=torch.float32) -> float:
    """Dense n x n matmul FLOP/s on this machine with torch's current thread count
    (best of `repeats`: the peak a model step could reach)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best
