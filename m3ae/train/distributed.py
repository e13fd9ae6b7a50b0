"""Data-parallel training (DDP) for the pre-training and fine-tuning loops. Knows torch.distributed only.

    pretrain(cfg, out_dir, cache_dir, callbacks, parallel=DataParallel.from_process_group())

A loop given `parallel` runs as one of `world_size` processes of a process group that
whoever started the processes has set up (gloo on CPUs, nccl when each process has a
GPU: Ray Train does it in `ablations.distributed`; torchrun would do as well):
- Every process builds the same global batch of `batch_size` examples (same seed, same
  order) and trains on its own contiguous shard of batch_size / world_size examples, so the
  global batch and the data order are those of a single-process run.
- DDP averages the gradients over the processes: a step on the shards updates the weights
  as a single-process step on the global batch would, for a loss that is a mean over
  examples. Random masks and in-batch terms (ITM negatives, retrieval negatives) are drawn
  per shard, from a random stream of each process's own.
- Every process evaluates (the same weights on the same data give the same numbers, and
  it would only wait otherwise); rank 0 alone writes checkpoints and files and calls the
  callbacks, with the step metrics averaged over the processes.

`SINGLE` (world size 1, the loops' default) changes nothing: every method is the identity,
so a single-process run is the plain loop, bit for bit.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np
import torch
from torch import nn

from m3ae.batch import Batch


class ShardLoss(nn.Module):
    """`loss(batch)` computed with `module`'s parameters, as a module DDP can wrap
    (a fine-tuning loss calls the backbone's and the head's methods, not one forward)."""

    def __init__(self, module: nn.Module, loss: Callable[[Batch], torch.Tensor]):
        super().__init__()
        self.module, self.loss = module, loss

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.loss(batch)


@dataclass
class DataParallel:
    """This process's place in the group: rank, world size and device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    samples: int = 0  # examples this process has trained on (all stages)
    first_shard: str = ""  # digest of the first shard it trained on: shows that each process saw other examples

    @classmethod
    def from_process_group(cls, device: torch.device | str | None = None) -> DataParallel:
        """The calling process's rank and world size in the initialised default process group."""
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError("DataParallel.from_process_group: torch.distributed has no process group; "
                               "start the processes with Ray Train or torchrun")
        return cls(dist.get_rank(), dist.get_world_size(), torch.device(device or "cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and calls the callbacks."""
        return self.rank == 0

    @property
    def _distributed(self) -> bool:
        return self.world_size > 1

    def place(self, module: nn.Module) -> nn.Module:
        """The module on this process's device (a no-op on CPU)."""
        return module.to(self.device) if self.device.type != "cpu" else module

    def wrap(self, module: nn.Module, loss: Callable[[Batch], torch.Tensor] | None = None) -> nn.Module:
        """What a training step calls: `module` (or `loss` over its parameters), in DDP when distributed.

        find_unused_parameters: a fine-tuning task leaves the pre-training heads unused, an
        ablation the layers only a disabled objective reads; their gradients stay None, as in
        one process. Buffers (fixed positional tables) are synced once, not at every forward."""
        target = module if loss is None else ShardLoss(module, loss)
        if not self._distributed:
            return target
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(target, device_ids=[self.device] if self.device.type == "cuda" else None,
                                       find_unused_parameters=True, forward_sync_buffers=False)

    def shard(self, batch: Batch) -> Batch:
        """This process's examples [rank * B / W, (rank + 1) * B / W) of a global batch of B."""
        if not self._distributed:
            return batch
        n = len(batch)
        lo, hi = n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size
        part = Batch(**{f.name: None if getattr(batch, f.name) is None else getattr(batch, f.name)[lo:hi]
                        for f in fields(batch)})
        if not self.first_shard:
            self.first_shard = _digest(part)
        self.samples += len(part)
        return part.to(self.device) if self.device.type != "cpu" else part

    def mean(self, metrics: dict[str, float]) -> dict[str, float]:
        """Step metrics averaged over the processes (what rank 0 reports for the global batch)."""
        if not self._distributed:
            return metrics
        import torch.distributed as dist

        names = sorted(metrics)
        values = torch.tensor([float(metrics[k]) for k in names], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        return dict(zip(names, (values / self.world_size).tolist()))

    def seed(self, seed: int, step: int) -> None:
        """From here on, this process draws masks, negatives and dropout from a stream of its own
        (mixed from the trial seed, the step and the rank; also after a resume)."""
        if not self._distributed:
            return
        mixed = int.from_bytes(hashlib.sha256(f"{seed}:{step}:{self.rank}".encode()).digest()[:4], "little")
        torch.manual_seed(mixed)
        random.seed(mixed)
        np.random.seed(mixed)

    def agree(self, value: int, what: str) -> None:
        """Every process must hold the same `value` (the step a run resumes from): else a clear error,
        not a hang in the next collective."""
        if not self._distributed:
            return
        import torch.distributed as dist

        values: list = [None] * self.world_size
        dist.all_gather_object(values, value)
        if len(set(values)) > 1:
            raise RuntimeError(f"the {self.world_size} workers disagree on {what}: {values} (by rank); every worker "
                               f"must read the same output folder (a folder shared by all nodes)")

    def record(self) -> dict:
        """What this process did: rank, device, examples trained on, digest of its first shard."""
        return {"rank": self.rank, "world_size": self.world_size, "device": str(self.device),
                "samples": self.samples, "first_shard": self.first_shard}


SINGLE = DataParallel()  # one process: every method above is the identity


def _digest(batch: Batch) -> str:
    blob = batch.input_ids.detach().cpu().numpy().tobytes() + batch.images.detach().cpu().float().numpy().tobytes()
    return hashlib.sha256(blob).hexdigest()[:12]
