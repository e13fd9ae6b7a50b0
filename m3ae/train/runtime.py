"""What both stages set up the same way: seeds, threads, precision, loss checks."""

from __future__ import annotations

import contextlib
import random
import warnings

import numpy as np
import torch


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the stage and step."""

    def __init__(self, stage: str, step: int, losses: dict[str, float]):
        self.stage, self.step, self.losses = stage, step, losses
        parts = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        super().__init__(f"{stage}: non-finite loss at step {step} ({parts}); "
                         f"lower the learning rate or check the data")

    def __reduce__(self):  # Ray pickles a trial's exception to the driver: rebuild it from its fields
        return type(self), (self.stage, self.step, self.losses)


def seed_everything(seed: int, threads: int = 0) -> None:
    """Seed torch / Python / NumPy so that a CPU run repeats exactly; threads > 0 pins torch's thread count."""
    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def autocast(precision: str, device_type: str = "cpu"):
    """bf16 autocast on the device (CPU, or a data-parallel worker's GPU) when asked; fp32 runs untouched."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def maybe_compile(module: torch.nn.Module, enabled: bool, backend: str | object = "inductor"):
    """`torch.compile(module)` when `enabled` and this Python / torch can compile; else the module
    itself, with a warning saying why. A graph that fails to compile at its first call runs
    eagerly instead (dynamo's suppress_errors), so the switch never stops a run."""
    if not enabled:
        return module
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        warnings.warn("compile: torch.compile is not supported with this Python / torch; running eagerly",
                      stacklevel=2)
        return module
    torch._dynamo.config.suppress_errors = True
    return torch.compile(module, backend=backend)


def check_finite(stage: str, step: int, loss: torch.Tensor, parts: dict[str, torch.Tensor] | None = None) -> None:
    if not torch.isfinite(loss).all():
        values = {"loss": loss.item(), **{k: v.item() for k, v in (parts or {}).items()}}
        raise NonFiniteLossError(stage, step, values)


def on_model_device(batches, model):
    """Evaluation batches on the model's device: the loader itself on CPU, moved batches on a GPU
    (a data-parallel worker's)."""
    device = next(model.parameters()).device
    return batches if device.type == "cpu" else (batch.to(device) for batch in batches)


@contextlib.contextmanager
def fixed_rng(seed: int):
    """Run a block (an evaluation) with its own seeded RNG, leaving training's RNG untouched:
    evaluations then see the same masks every time, and resuming stays exact."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
