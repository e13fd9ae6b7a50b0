"""Checkpoints: model (+ optimizer, scheduler, step, RNG state) with the config that made them.

Saved with `torch.save` (atomically: temp file + rename) and loaded with
`weights_only=True`, so a checkpoint holds tensors and plain Python values only.
The config travels with the weights: loading into a model built from a different
architecture fails with the config paths that differ, not a wall of key names.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from m3ae.config import flatten, to_dict

FORMAT = 1  # bump when the layout below changes


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model it is loaded into."""


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from (torch CPU, Python, NumPy)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def save_checkpoint(path: Path, *, model: nn.Module, cfg, step: int, optimizer=None, scheduler=None,
                    **extra: Any) -> Path:
    """Write a checkpoint; `extra` holds more plain values (metrics, stage name)."""
    state = {
        "format": FORMAT,
        "config": to_dict(cfg),
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        **extra,
    }
    return write_checkpoint(path, state)


def write_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint dict (as `save_checkpoint` builds or `load_checkpoint` returns) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain values only: weights_only=True). `mmap`: tensors stay
    in the file until touched, for a caller that reads a small part of a large checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointMismatchError(f"{path}: not an m3ae checkpoint of format {FORMAT}")
    return state


def config_differences(saved: dict, cfg, prefix: str = "model.") -> list[str]:
    """'path: checkpoint X, config Y' for every leaf under `prefix` that differs."""
    from m3ae.config import from_dict

    return flat_differences({k: v for k, v in flatten(from_dict(saved)).items() if k.startswith(prefix)},
                            {k: v for k, v in flatten(cfg).items() if k.startswith(prefix)})


def flat_differences(theirs: dict, ours: dict) -> list[str]:
    """'path: checkpoint X, config Y' for every dotted key whose values differ."""
    return [f"{k}: checkpoint {theirs.get(k)!r}, config {ours.get(k)!r}"
            for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)]


# Paths that change what a tensor means without changing its name or shape: learned
# image positions loaded into a model that keeps them fixed (or back) would train wrongly.
SAME_SHAPE_ARCHITECTURE = ("model.vision.pos_embed",)


POSITIONS = "vision_encoder.vit.pos_embed"


def fit_image_positions(weights: dict[str, Any], own: dict[str, Any], cfg) -> dict[str, Any]:
    """Learned image positions resampled to the model's grid (fine-tuning at 384 px from a
    288 px pre-training, as the paper's code does with bicubic interpolation); fixed sin-cos
    positions are the model's own at any size."""
    theirs, ours = weights.get(POSITIONS), own.get(POSITIONS)
    if theirs is None or ours is None or theirs.shape == ours.shape or theirs.shape[-1] != ours.shape[-1]:
        return weights
    if cfg.model.vision.pos_embed == "sincos":
        return {**weights, POSITIONS: ours}
    from timm.layers import resample_abs_pos_embed

    n = ours.shape[1]
    prefix = 0 if math.isqrt(n) ** 2 == n else 1  # a [CLS] row, unless the table is patches only
    side = math.isqrt(n - prefix)  # square images: side x side patches
    resized = resample_abs_pos_embed(theirs, new_size=(side, side), num_prefix_tokens=prefix)
    return {**weights, POSITIONS: resized}


# Pre-training heads: a checkpoint may lack them (an official fine-tuned one has none) and
# fine-tuning never reads them, so `model.init` leaves them at their initialisation.
PRETRAINING_HEADS = ("objectives.", "itm_head.")


def load_init_weights(model: nn.Module, path: str, model_cfg) -> None:
    """`model.init`: start `model` (built from `model_cfg`, a ModelConfig) from a checkpoint's weights.
    Strict, as load_model_weights, except for pre-training heads the checkpoint lacks."""
    from m3ae.config import Config, PretrainConfig

    state = load_checkpoint(Path(path).expanduser())
    own = model.state_dict()
    absent = [k for k in own if k not in state["model"] and k.startswith(PRETRAINING_HEADS)]
    weights = {**state["model"], **{k: own[k] for k in absent}}
    load_model_weights(model, {**state, "model": weights}, Config(model=model_cfg, pretrain=PretrainConfig(enabled=False)),
                       source=f"model.init {path}")


# A released fine-tuned head (`ablate import-m3ae --task`): {"task": name, "classes": [names in the
# official code's order], "weights": the head's state_dict in that order}.
TASK_HEAD = "task_head"


def read_task_head(path: str, task: str) -> dict[str, Any] | None:
    """The fine-tuned head a `model.init` checkpoint carries for `task` (None: no head, or another task's)."""
    # mapped: every fine-tuning from model.init asks, and the model's weights (read already, by
    # build_model) are most of a paper-scale file; only the head's tensors are read here
    saved = load_checkpoint(Path(path).expanduser(), mmap=True).get(TASK_HEAD)
    return saved if saved is not None and saved["task"] == task else None


def load_task_head(head: nn.Module, saved: dict[str, Any], labels: list[str], source: str) -> None:
    """Load an imported head into `head`, whose output i stands for `labels[i]` (the loader's order).

    The checkpoint keeps the official order with its names, and the output rows are permuted
    here, by name: a row copy is exact, and the file stays right whatever order a loader gives
    (or a later version of it). The two class lists must be the same set."""
    position = {name: i for i, name in enumerate(saved["classes"])}
    unknown = [label for label in labels if label not in position]
    if len(saved["classes"]) != len(labels) or unknown:
        raise CheckpointMismatchError(
            f"{source}: its {saved['task']} head has {len(saved['classes'])} classes, the data {len(labels)}"
            + (f"; not among the head's classes: {unknown[:8]}{' ...' if len(unknown) > 8 else ''}" if unknown else "")
            + " (other dataset files than the head was trained on? import it again with --data-root of these)")
    head.load_state_dict(saved["weights"])
    rows = torch.tensor([position[label] for label in labels])
    output = head.get_submodule(head.OUTPUT)
    with torch.no_grad():
        output.weight.copy_(output.weight[rows])
        output.bias.copy_(output.bias[rows])


def load_model_weights(model: nn.Module, state: dict[str, Any], cfg, source: str = "checkpoint") -> None:
    """Load `state["model"]` into `model` (built from `cfg`), strictly.

    Settings that don't change the weights (mask ratios, loss weights) may differ;
    anything that changes a tensor's name, shape or meaning (SAME_SHAPE_ARCHITECTURE)
    is a CheckpointMismatchError naming the config paths where the checkpoint and `cfg` disagree.
    """
    own = model.state_dict()
    weights = fit_image_positions(state["model"], own, cfg)
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    reshaped = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    diffs = config_differences(state["config"], cfg)
    other_meaning = [d for d in diffs if d.split(":")[0] in SAME_SHAPE_ARCHITECTURE]
    if missing or unexpected or reshaped or other_meaning:
        detail = "; ".join(
            f"{what}: {names[:4]}{' ...' if len(names) > 4 else ''}"
            for what, names in (("missing", missing), ("unexpected", unexpected), ("shape differs", reshaped),
                                ("same tensors, another meaning", other_meaning))
            if names)
        raise CheckpointMismatchError(
            f"{source} was made by a different architecture; config paths that differ: "
            f"{diffs or ['(none: the model code changed)']} ({detail})")
    model.load_state_dict(weights)
