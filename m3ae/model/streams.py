"""Named random streams: common random numbers across the settings of a study.

Two settings of a study run with the same seed should draw the same random numbers wherever
they do the same thing: the same initial weights for the parts they share, the same fine-tuning
head, the same image masks when only the text side differs. One global RNG cannot do that: a
part that one setting has and the other lacks (a Transformer instead of an MLP decoder, ITM off)
shifts every number drawn after it. So each part draws from its own stream, seeded from one
number taken off torch's global RNG and the part's name, and the global RNG moves by the same
amount in every setting. The trainer's seed still fixes everything (seed -> global RNG -> base).
"""

from __future__ import annotations

import contextlib
import hashlib

import torch


def draw_base() -> int:
    """One number off torch's global RNG: the base of this call's streams."""
    return int(torch.randint(0, 2**62, (), device="cpu").item())  # CPU even under torch.device("meta")


@contextlib.contextmanager
def stream(base: int, name: str, device: torch.device | str | None = None):
    """Run a block on the stream (base, name): its own seeded RNG, the global one untouched after.
    `device`: where the block draws (a CUDA device's generator is forked too)."""
    seed = int.from_bytes(hashlib.sha256(f"{base}:{name}".encode()).digest()[:8], "little") & (2**63 - 1)
    device = torch.device(device) if device is not None else None
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
