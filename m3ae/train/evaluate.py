"""Evaluation: pre-training validation losses, reconstruction pictures, and the
prediction loops the fine-tuning tasks score (all without gradients)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from m3ae.train.runtime import fixed_rng, on_model_device

EVAL_SEED = 1_000_003  # evaluation masks come from their own RNG: the same at every evaluation
N_PICTURES = 8  # validation images in a reconstruction grid


def _loader(dataset, batch_size: int, cfg, model):
    from m3ae.data import make_loader

    return on_model_device(make_loader(dataset, batch_size, train=False, cfg=cfg, seed=cfg.seed), model)


@torch.no_grad()
def evaluate_pretrain(model, val_set, cfg) -> dict[str, float]:
    """Mean validation loss, per-objective losses and accuracies over the first
    `cfg.pretrain.eval_batches` batches, prefixed "val_" (val_loss, val_mim_loss, val_itm_acc, ...)."""
    model.eval()
    sums: dict[str, float] = defaultdict(float)
    seen = 0
    with fixed_rng(cfg.seed + EVAL_SEED):
        for i, batch in enumerate(_loader(val_set, cfg.pretrain.batch_size, cfg, model)):
            if i >= cfg.pretrain.eval_batches:
                break
            if len(batch) < 2:  # ITM needs a partner in the batch
                continue
            out = model(batch)
            values = {"loss": out.loss.item(), **{k: v.item() for k, v in out.losses.items()}, **out.metrics}
            for name, value in values.items():
                sums[f"val_{name}"] += value * len(batch)
            seen += len(batch)
    if not seen:
        raise ValueError(f"the validation split has fewer than 2 examples ({len(val_set)})")
    return {name: total / seen for name, total in sums.items()}


@torch.no_grad()
def save_reconstructions(model, val_set, cfg, path: Path, n: int = N_PICTURES) -> Path:
    """A PNG grid of the same `n` validation images: originals (top row), what the
    encoder sees (middle), the MIM reconstruction with visible patches pasted back (bottom)."""
    from torchvision.utils import save_image

    model.eval()
    batch = next(iter(_loader(val_set, n, cfg, model)))
    with fixed_rng(cfg.seed + EVAL_SEED):
        original, masked, reconstructed = model.reconstruction_images(batch)
    grid = torch.cat([original, masked, reconstructed]).float().clamp(0, 1)
    scale = max(1, 96 // grid.shape[-1])  # small images: enlarge (nearest) so patches stay crisp
    if scale > 1:
        grid = F.interpolate(grid, scale_factor=scale, mode="nearest")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path, nrow=len(original), padding=2, pad_value=1.0)
    return path
