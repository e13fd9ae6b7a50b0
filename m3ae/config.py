"""Dataclass configs, the three profiles, dotted overrides, YAML and flat views.

A `Config` is frozen: derive a new one with `apply_overrides(cfg, [...])` or
`dataclasses.replace`. Every config checks its own values when built, so a bad
value (ratio 1.2, recon layer 9 of 6, an unknown decoder) fails here, not in
the middle of training.

    cfg = profile("laptop")
    cfg = apply_overrides(cfg, ["model.mim.mask_ratio=0.5", "seed=1"])
    to_yaml(cfg); from_dict(yaml.safe_load(text)); flatten(cfg)

The names of the fields are a contract: study files, MLflow params and
dashboards address them by dotted path.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from m3ae import registry


class ConfigError(ValueError):
    """A config value, path or file is wrong. The message names the path."""


def _check(condition: bool, path: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{path}: {message}")


def _check_ratio(value: float, path: str) -> None:
    _check(0.0 < value < 1.0, path, f"must be a ratio strictly between 0 and 1, got {value}")


MAX_SEED = 2**32 - 1  # numpy's seeds are 0 .. 2**32 - 1


def _check_int(value: int, path: str, low: int, high: int | None = None) -> None:
    """low <= value (<= high)."""
    within = value >= low and (high is None or value <= high)
    _check(within, path, f"must be at least {low}, got {value}" if high is None else
           f"must be in {low}..{high}, got {value}")


def _check_float(value: float, path: str, low: float, *, low_open: bool = False, high: float | None = None,
                 high_open: bool = False) -> None:
    """A finite number in [low, high] (an end is excluded when `*_open`); NaN and inf never pass."""
    ok = math.isfinite(value) and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if high is None:
        expected = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        expected = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    _check(ok, path, f"must be {expected}, got {value}")


def _check_heads(width: int, heads: int, path: str, heads_path: str) -> None:
    """Attention splits a width into heads of equal size."""
    _check_int(heads, heads_path, 1)
    _check(width % heads == 0, path, f"must be divisible by {heads_path.rsplit('.', 1)[-1]} {heads}, got {width}")


def _check_component(registry_name: str, name: str, path: str) -> None:
    """A component name must exist in its registry (which knows its built-in names without
    importing the modules that provide them: checking a config imports no torch)."""
    reg = getattr(registry, registry_name)
    if name not in reg:
        raise ConfigError(f"{path}: {reg.unknown_message(name)}")


# timm's plain ViT names, as `timm.list_models(module="vision_transformer")` gives them (a test
# holds the file to timm's own list): a config naming one of them is checked without timm
TIMM_VIT_NAMES = Path(__file__).parent / "model" / "timm_vit_names.txt"


@functools.lru_cache(maxsize=1)
def _listed_timm_names() -> frozenset[str]:
    return frozenset(TIMM_VIT_NAMES.read_text().split())


def _check_model_name(encoder: str, name: str) -> None:
    """A vision encoder factory may list the model names it builds (`model_names()`); timm's are
    first looked up in the file, so the usual names are checked without importing timm."""
    if encoder == "timm" and name in _listed_timm_names():
        return
    known = getattr(registry.VISION_ENCODERS.get(encoder), "model_names", None)
    if known is not None and name not in known():
        hint = registry.closest(name, known())
        raise ConfigError(f"model.vision.name: unknown {encoder} model {name!r}"
                          + (f"; did you mean {hint!r}?" if hint else ""))


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class VisionConfig:
    name: str = "vit_tiny_patch16_224"  # the model within the encoder family: a timm ViT name
    encoder: str = "timm"  # the registered vision encoder family that builds `name`
    image_size: int = 32  # input side in pixels (square)
    patch_size: int = 8  # ViT patch side; image_size must be a multiple
    width: Optional[int] = None  # embed dim; None keeps the timm model's own
    depth: Optional[int] = None  # number of blocks; None keeps the timm model's own
    num_heads: Optional[int] = None  # attention heads; None keeps the timm model's own
    weights: Optional[str] = None  # local weights file (.safetensors/.pth); None = random init
    drop_path: float = 0.0  # stochastic depth rate
    pos_embed: str = "learned"  # learned (timm's, random init) | sincos (MAE's fixed 2-D sin-cos)
    # pixel normalisation the tower expects: half = (x - 0.5) / 0.5; clip = CLIP's mean / std
    image_norm: Literal["half", "clip"] = "half"

    def __post_init__(self):
        _check_component("VISION_ENCODERS", self.encoder, "model.vision.encoder")
        _check(self.pos_embed in ("learned", "sincos"), "model.vision.pos_embed",
               f"must be 'learned' or 'sincos', got {self.pos_embed!r}")
        _check(self.image_norm in ("half", "clip"), "model.vision.image_norm",
               f"must be 'half' or 'clip', got {self.image_norm!r}")
        _check_model_name(self.encoder, self.name)
        _check(self.patch_size > 0, "model.vision.patch_size", "must be positive")
        _check(
            self.image_size > 0 and self.image_size % self.patch_size == 0,
            "model.vision.image_size",
            f"must be a positive multiple of patch_size {self.patch_size}, got {self.image_size}",
        )
        for name in ("width", "depth", "num_heads"):
            value = getattr(self, name)
            _check(value is None or value > 0, f"model.vision.{name}", f"must be positive, got {value}")
        if self.width is not None and self.num_heads is not None:
            _check_heads(self.width, self.num_heads, "model.vision.width", "model.vision.num_heads")
        _check_float(self.drop_path, "model.vision.drop_path", 0.0, high=1.0, high_open=True)


@dataclass(frozen=True)
class TextConfig:
    kind: str = "bert"  # bert | roberta: the transformers architecture (a registered text encoder)
    pretrained: Optional[str] = None  # local directory with a transformers model; None = build from config
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 256
    max_length: int = 32  # tokens per text, including special tokens
    dropout: float = 0.1

    def __post_init__(self):
        _check_component("TEXT_ENCODERS", self.kind, "model.text.kind")
        _check_int(self.hidden_size, "model.text.hidden_size", 1)
        _check_heads(self.hidden_size, self.num_heads, "model.text.hidden_size", "model.text.num_heads")
        _check_int(self.num_layers, "model.text.num_layers", 1)
        _check_int(self.intermediate_size, "model.text.intermediate_size", 1)
        _check_int(self.max_length, "model.text.max_length", 8)
        _check_float(self.dropout, "model.text.dropout", 0.0, high=1.0, high_open=True)


@dataclass(frozen=True)
class FusionConfig:
    name: str = "coattention"  # a registered fusion stack
    num_layers: int = 2  # co-attention layers per modality (paper: 6)
    hidden_size: int = 64  # width of the fusion layers (paper: 768)
    num_heads: int = 2
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    # LayerNorm on each stream after projection + type embedding; the official code has none
    input_norm: bool = True

    def __post_init__(self):
        _check_component("FUSION", self.name, "model.fusion.name")
        _check_int(self.num_layers, "model.fusion.num_layers", 1)
        _check_int(self.hidden_size, "model.fusion.hidden_size", 1)
        _check_heads(self.hidden_size, self.num_heads, "model.fusion.hidden_size", "model.fusion.num_heads")
        _check_float(self.mlp_ratio, "model.fusion.mlp_ratio", 0.0, low_open=True)
        _check_float(self.dropout, "model.fusion.dropout", 0.0, high=1.0, high_open=True)


@dataclass(frozen=True)
class MIMConfig:
    """Masked image modelling."""

    enabled: bool = True
    mask_ratio: float = 0.75  # share of patches hidden from the encoder
    masking: str = "random"  # random | block (a registered image masking)
    recon_layer: int = -1  # image features after this many fusion layers feed the decoder; 0 = before fusion, -1 = last
    decoder: str = "transformer"  # transformer | mlp (a registered vision decoder)
    decoder_depth: int = 2
    decoder_width: int = 64
    decoder_heads: int = 2
    norm_pix_loss: bool = True  # targets are per-patch normalised pixels
    weight: float = 1.0

    def __post_init__(self):
        _check_ratio(self.mask_ratio, "model.mim.mask_ratio")
        _check_component("IMAGE_MASKING", self.masking, "model.mim.masking")
        _check_component("VISION_DECODERS", self.decoder, "model.mim.decoder")
        _check_int(self.decoder_depth, "model.mim.decoder_depth", 1)
        _check_int(self.decoder_width, "model.mim.decoder_width", 4)
        _check_heads(self.decoder_width, self.decoder_heads, "model.mim.decoder_width", "model.mim.decoder_heads")
        _check(self.decoder_width % 4 == 0, "model.mim.decoder_width",
               f"must be divisible by 4 (2D sin-cos positions), got {self.decoder_width}")
        _check_float(self.weight, "model.mim.weight", 0.0)


@dataclass(frozen=True)
class MLMConfig:
    """Masked language modelling."""

    enabled: bool = True
    mask_ratio: float = 0.15
    masking: str = "whole_word"  # token | whole_word | span (a registered text masking)
    recon_layer: int = -1  # text features after this many fusion layers; 0 = before fusion, -1 = last
    decoder: str = "mlp"  # mlp | transformer (a registered language decoder)
    decoder_depth: int = 1  # layers of the transformer decoder (unused by mlp)
    weight: float = 1.0

    def __post_init__(self):
        _check_ratio(self.mask_ratio, "model.mlm.mask_ratio")
        _check_component("TEXT_MASKING", self.masking, "model.mlm.masking")
        _check_component("LANGUAGE_DECODERS", self.decoder, "model.mlm.decoder")
        _check_int(self.decoder_depth, "model.mlm.decoder_depth", 1)
        _check_float(self.weight, "model.mlm.weight", 0.0)


@dataclass(frozen=True)
class ITMConfig:
    """Image-text matching."""

    enabled: bool = True
    negatives: str = "random"  # random | hard (a registered ITM negative sampler)
    negative_ratio: float = 0.5  # share of pairs whose image is swapped for another
    weight: float = 1.0

    def __post_init__(self):
        _check_component("ITM_NEGATIVES", self.negatives, "model.itm.negatives")
        _check_ratio(self.negative_ratio, "model.itm.negative_ratio")
        _check_float(self.weight, "model.itm.weight", 0.0)


@dataclass(frozen=True)
class ModelConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    mim: MIMConfig = field(default_factory=MIMConfig)
    mlm: MLMConfig = field(default_factory=MLMConfig)
    itm: ITMConfig = field(default_factory=ITMConfig)
    # separate: one fusion pass per objective (the paper's code); joint: MIM and MLM share one
    # pass over the masked image and the masked text (fewer FLOPs; an ablation of its own)
    passes: Literal["separate", "joint"] = "separate"
    # a checkpoint of this project's format (e.g. written by `ablate import-m3ae`) the model starts
    # from: every tensor must fit, except pre-training heads it lacks (they keep their init)
    init: Optional[str] = None

    def __post_init__(self):
        n = self.fusion.num_layers
        for name in ("mim", "mlm"):
            layer = getattr(self, name).recon_layer
            _check(-1 <= layer <= n, f"model.{name}.recon_layer",
                   f"must be -1 (last) or 0..{n} (model.fusion.num_layers is {n}), got {layer}")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataConfig:
    root: Optional[str] = None  # folder with the real datasets; None = only the embedded synthmed
    pretrain: str = "synth_pairs"  # pre-training dataset (synth_pairs | roco | medicat | roco+medicat)
    synth_seed: int = 0  # synthmed generator seed (fixed across trials: the benchmark, not the trial seed)
    synth_pairs: int = 2000  # synthmed pre-training pairs
    synth_vqa_images: int = 200  # synthmed images that carry VQA questions (few labels, as VQA-RAD)
    synth_questions_per_image: int = 8
    synth_vqa_eval_images: int = 0  # images in each of synth_vqa's val and test splits; 0 = 20% of synth_vqa_images
    synth_cls_pairs: int = 600
    synth_irtr_pairs: int = 300
    synth_scanner_variation: float = 0.0  # per-image contrast / brightness / gamma jitter of synthmed; 0 = none, 1 = strong
    vocab_size: int = 1000  # WordPiece vocabulary trained on the pre-training corpus
    tokenizer: Optional[str] = None  # local transformers tokenizer directory; None = train one
    augment: bool = True  # random resized crop at train time
    num_workers: int = 0  # DataLoader workers

    def __post_init__(self):
        _check_int(self.synth_seed, "data.synth_seed", 0, MAX_SEED)
        _check_int(self.synth_pairs, "data.synth_pairs", 8)
        for name in ("synth_vqa_images", "synth_questions_per_image", "synth_cls_pairs", "synth_irtr_pairs"):
            _check_int(getattr(self, name), f"data.{name}", 1)
        _check_int(self.synth_vqa_eval_images, "data.synth_vqa_eval_images", 0)
        _check(self.synth_vqa_eval_images == 0 or self.synth_vqa_images - 2 * self.synth_vqa_eval_images >= 4,
               "data.synth_vqa_images",
               f"must leave at least 4 training images after 2 x data.synth_vqa_eval_images "
               f"({self.synth_vqa_eval_images}) for val and test, got {self.synth_vqa_images}")
        _check_float(self.synth_scanner_variation, "data.synth_scanner_variation", 0.0, high=2.0)
        _check_int(self.vocab_size, "data.vocab_size", 100)
        _check_int(self.num_workers, "data.num_workers", 0)


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.1  # share of steps with linear warm-up
    schedule: Literal["linear", "cosine", "constant"] = "linear"  # decay after warm-up
    fusion_lr_mult: float = 5.0  # the paper's code trains fusion layers at 5x the base lr
    head_lr_mult: float = 5.0  # and task / objective heads at 5x (up to 50x)
    grad_clip: float = 1.0  # max gradient norm; 0 disables
    # examples per forward/backward (per process); gradients accumulate up to batch_size; 0 = whole batch
    micro_batch_size: int = 0

    def __post_init__(self):
        stage = "pretrain" if isinstance(self, PretrainConfig) else "finetune"  # the section it is read from
        _check_float(self.lr, f"{stage}.lr", 0.0, low_open=True)
        _check_float(self.weight_decay, f"{stage}.weight_decay", 0.0)
        _check(self.micro_batch_size >= 0, f"{stage}.micro_batch_size",
               f"must be non-negative (0 = the whole batch), got {self.micro_batch_size}")
        _check_float(self.warmup_frac, f"{stage}.warmup_frac", 0.0, high=1.0, high_open=True)
        _check_float(self.fusion_lr_mult, f"{stage}.fusion_lr_mult", 0.0, low_open=True)
        _check_float(self.head_lr_mult, f"{stage}.head_lr_mult", 0.0, low_open=True)
        _check_float(self.grad_clip, f"{stage}.grad_clip", 0.0)


@dataclass(frozen=True)
class PretrainConfig(OptimConfig):
    enabled: bool = True  # False: fine-tune from random init (the "no pre-training" baseline)
    steps: int = 200
    batch_size: int = 32
    eval_every: int = 100  # validation and reconstruction pictures every N steps (0: only at the end)
    eval_batches: int = 4
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast where the device supports it

    def __post_init__(self):
        super().__post_init__()
        _check_int(self.steps, "pretrain.steps", 1)
        _check(self.batch_size >= 2, "pretrain.batch_size", f"must be at least 2 (ITM needs a negative), "
                                                            f"got {self.batch_size}")
        _check_int(self.eval_every, "pretrain.eval_every", 0)
        _check_int(self.eval_batches, "pretrain.eval_batches", 1)
        _check(self.micro_batch_size == 0 or (self.micro_batch_size >= 2 and self.batch_size % self.micro_batch_size == 0),
               "pretrain.micro_batch_size", f"must be 0 or a divisor of pretrain.batch_size {self.batch_size} of at "
               f"least 2 (ITM draws its negatives within each micro-batch), got {self.micro_batch_size}")


@dataclass(frozen=True)
class TaskSettings:
    """One task's fine-tuning settings where they differ from `finetune`'s; None keeps
    finetune's value (or the model's, for image_size and max_length)."""

    batch_size: Optional[int] = None  # the effective batch
    micro_batch_size: Optional[int] = None  # examples per forward/backward; 0 = the whole batch
    epochs: Optional[int] = None
    lr: Optional[float] = None
    fusion_lr_mult: Optional[float] = None
    head_lr_mult: Optional[float] = None
    image_size: Optional[int] = None  # model.vision.image_size while fine-tuning (positions interpolated)
    max_length: Optional[int] = None  # model.text.max_length while fine-tuning


@dataclass(frozen=True)
class PerTaskConfig:
    """Per-task settings by task name (`finetune.per_task.vqa_rad.epochs=50`): the
    paper's code fine-tunes each task with its own batch, epochs and head lr."""

    synth_vqa: TaskSettings = field(default_factory=TaskSettings)
    synth_cls: TaskSettings = field(default_factory=TaskSettings)
    synth_irtr: TaskSettings = field(default_factory=TaskSettings)
    vqa_rad: TaskSettings = field(default_factory=TaskSettings)
    slake: TaskSettings = field(default_factory=TaskSettings)
    medvqa_2019: TaskSettings = field(default_factory=TaskSettings)
    melinda: TaskSettings = field(default_factory=TaskSettings)
    roco: TaskSettings = field(default_factory=TaskSettings)

    def __post_init__(self):  # the rest is checked where task_config applies them, under their own paths
        for task in dataclasses.fields(self):
            for name, value in dataclasses.asdict(getattr(self, task.name)).items():
                least_ok = value is None or (math.isfinite(value)
                                             and (value >= 0 if name == "micro_batch_size" else value > 0))
                _check(least_ok, f"finetune.per_task.{task.name}.{name}",
                       f"must be {'non-negative' if name == 'micro_batch_size' else 'positive'} and finite, got {value}")


@dataclass(frozen=True)
class FinetuneConfig(OptimConfig):
    tasks: tuple[str, ...] = ("synth_vqa",)  # registered fine-tuning tasks, run one after another
    epochs: int = 10
    batch_size: int = 32
    train_fraction: float = 1.0  # share of the task's training set used (data-efficiency studies)
    lr: float = 5e-4
    eval_every_epochs: int = 1
    eval_batch_size: int = 256  # examples per evaluation forward (no gradients: larger than training's)
    precision: Literal["fp32", "bf16"] = "fp32"
    per_task: PerTaskConfig = field(default_factory=PerTaskConfig)  # each task's own settings (task_config)
    # no training: score the model as loaded, e.g. a released fine-tuned head (`ablate import-m3ae --task`)
    evaluate_only: bool = False

    def __post_init__(self):
        super().__post_init__()
        _check(len(self.tasks) >= 1, "finetune.tasks", "must name at least one task")
        for task in self.tasks:
            _check_component("TASKS", task, "finetune.tasks")
        _check_int(self.epochs, "finetune.epochs", 1)
        _check_int(self.batch_size, "finetune.batch_size", 1)
        _check_int(self.eval_batch_size, "finetune.eval_batch_size", 1)
        _check_float(self.train_fraction, "finetune.train_fraction", 0.0, low_open=True, high=1.0)
        _check_int(self.eval_every_epochs, "finetune.eval_every_epochs", 1)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seed: int = 0  # the trial seed: model init, masking, data order
    threads: int = 0  # torch threads for this run; 0 = leave torch's default
    compile: bool = False  # torch.compile the pre-training step (inductor); eager where it cannot compile

    def __post_init__(self):
        _check_int(self.seed, "seed", 0, MAX_SEED)
        _check_int(self.threads, "threads", 0)
        if self.pretrain.enabled:
            _check(self.model.mim.enabled or self.model.mlm.enabled or self.model.itm.enabled,
                   "model", "pre-training needs at least one objective enabled (model.mim / mlm / itm "
                   ".enabled), or set pretrain.enabled=false")


# --------------------------------------------------------------------------- profiles


def _smoke() -> Config:
    """Tests and CI: seconds per trial."""
    return from_dict({
        "model": {
            "vision": {"image_size": 32, "patch_size": 8, "width": 32, "depth": 2, "num_heads": 2},
            "text": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_length": 24},
            "fusion": {"num_layers": 2, "hidden_size": 32, "num_heads": 2},
            "mim": {"decoder_depth": 1, "decoder_width": 32, "decoder_heads": 2, "recon_layer": 1},
        },
        "data": {"synth_pairs": 256, "synth_vqa_images": 48, "synth_questions_per_image": 4,
                 "synth_cls_pairs": 96, "synth_irtr_pairs": 48, "vocab_size": 400, "augment": False},
        "pretrain": {"steps": 10, "batch_size": 16, "eval_every": 0, "eval_batches": 1, "lr": 1e-3},
        "finetune": {"epochs": 1, "batch_size": 16, "lr": 1e-3},
    })


def _laptop() -> Config:
    """The default: the paper's regime at 2-core scale, many pairs and few labels.

    20,000 pre-training pairs against 60 labelled VQA images (921 questions),
    as ROCO + MedICaT against VQA-RAD, scored on 300 images (about 4,600
    questions: at 100, picking the best of 30 epochs added 1-2 points of noise
    to each trial). Every image has its own contrast, brightness and gamma
    (`data.synth_scanner_variation=1`), as real scanners and windows do: without
    it, 60 labelled images were enough to read the modality off absolute grey
    levels, and pre-training had little left to add. With it, over 5 seeds
    M3AE is 5.4 +- 1.1 points ahead of scratch and 1.9 +- 2.3 ahead of
    MLM + ITM (docs/results.md §1).

    MLM masks 40% of the words, not the paper's 15%. synthmed's reports are
    short and formulaic, and at 15% the report alone gives away most masked
    words (the 3-seed gap over scratch was half as large). Fine-tuning runs at
    lr 2e-4, not 5e-4. At 5e-4 the 921 labelled questions undo part of what
    pre-training learned (seed 0: 56.2 against 58.2), while scratch does best
    at 5e-4. A trial takes about 7 minutes of pre-training and 6 of
    fine-tuning on one core. Every tower is trained from scratch here, so
    fusion and heads train at the base lr (the paper's x5 multipliers are for
    fusion layers on top of pre-trained encoders); no dropout in such short
    runs.
    """
    return from_dict({
        "model": {
            "vision": {"image_size": 48, "patch_size": 8, "width": 96, "depth": 3, "num_heads": 3},
            "text": {"hidden_size": 96, "num_layers": 2, "num_heads": 3, "intermediate_size": 384, "max_length": 32,
                     "dropout": 0.0},
            "fusion": {"num_layers": 2, "hidden_size": 96, "num_heads": 3, "dropout": 0.0},
            "mim": {"decoder_depth": 1, "decoder_width": 64, "decoder_heads": 2, "recon_layer": 1},
            "mlm": {"mask_ratio": 0.4},
        },
        # synth_vqa: 60 training images (921 questions), val and test 300 images (~4,600 questions) each
        "data": {"synth_pairs": 20000, "synth_vqa_images": 660, "synth_vqa_eval_images": 300,
                 "synth_questions_per_image": 16, "synth_cls_pairs": 1200, "synth_irtr_pairs": 500,
                 "synth_scanner_variation": 1.0, "vocab_size": 1000},
        "pretrain": {"steps": 1500, "batch_size": 32, "eval_every": 500, "lr": 1e-3,
                     "fusion_lr_mult": 1.0, "head_lr_mult": 1.0},
        "finetune": {"epochs": 30, "batch_size": 32, "lr": 2e-4, "fusion_lr_mult": 1.0, "head_lr_mult": 5.0},
    })


def _paper() -> Config:
    """The paper's sizes: CLIP's ViT-B/16 at 288 px, RoBERTa-base, 6 co-attention layers of 768.

    The towers start from pre-trained weights in local files: `model.vision.weights`
    (timm's CLIP ViT-B/16, OpenAI weights: QuickGELU, hence the quickgelu name) and
    `model.text.pretrained` (a RoBERTa-base directory); left at None they start random.
    """
    return from_dict({
        "model": {
            "vision": {"name": "vit_base_patch16_clip_quickgelu_224", "image_size": 288, "patch_size": 16,
                       "image_norm": "clip"},
            "text": {"kind": "roberta", "hidden_size": 768, "num_layers": 12, "num_heads": 12,
                     "intermediate_size": 3072, "max_length": 64},
            "fusion": {"num_layers": 6, "hidden_size": 768, "num_heads": 12, "input_norm": False},
            "mim": {"mask_ratio": 0.75, "recon_layer": 3, "decoder_depth": 4, "decoder_width": 384,
                    "decoder_heads": 6},
            "mlm": {"mask_ratio": 0.15, "recon_layer": -1},
        },
        "data": {"pretrain": "roco+medicat", "vocab_size": 50265},
        "pretrain": {"steps": 100000, "batch_size": 256, "lr": 1e-5, "eval_every": 5000,
                     "precision": "bf16"},
        "finetune": {"tasks": ["vqa_rad"], "epochs": 50, "batch_size": 64, "lr": 5e-6, "fusion_lr_mult": 5.0,
                     "precision": "bf16", "per_task": PAPER_TASKS},
    })


# The official code's fine-tuning settings (its config.py task_finetune_* and run_scripts/
# finetune_m3ae.sh), all at lr 5e-6 with fusion at 5x: the scripts set images to 384 (VQA-RAD's
# config says 576) and keep ROCO retrieval at the pre-training 288; text 32 for VQA, 128 for MELINDA.
PAPER_TASKS = {
    "vqa_rad": {"batch_size": 64, "epochs": 50, "head_lr_mult": 50.0, "image_size": 384, "max_length": 32},
    "slake": {"batch_size": 32, "epochs": 15, "head_lr_mult": 50.0, "image_size": 384, "max_length": 32},
    "medvqa_2019": {"batch_size": 32, "epochs": 10, "head_lr_mult": 50.0, "image_size": 384, "max_length": 32},
    "melinda": {"batch_size": 16, "epochs": 20, "head_lr_mult": 10.0, "image_size": 384, "max_length": 128},
    "roco": {"batch_size": 256, "epochs": 10, "head_lr_mult": 5.0, "image_size": 288, "max_length": 64},
}


PROFILES = {"smoke": _smoke, "laptop": _laptop, "paper": _paper}
DEFAULT_PROFILE = "laptop"


def profile(name: str = DEFAULT_PROFILE) -> Config:
    if name not in PROFILES:
        hint = difflib.get_close_matches(name, PROFILES, n=1)
        raise ConfigError(f"unknown profile {name!r}: expected one of {sorted(PROFILES)}"
                          + (f"; did you mean {hint[0]!r}?" if hint else ""))
    return PROFILES[name]()


def task_config(cfg: Config, task: str) -> Config:
    """`cfg` as fine-tuning `task` runs it: the task's `finetune.per_task` settings applied."""
    settings = getattr(cfg.finetune.per_task, task, None)
    if settings is None:  # a task without per-task settings (a plug-in's): finetune's own
        return cfg
    changes = {k: v for k, v in dataclasses.asdict(settings).items() if v is not None}
    model_paths = {"image_size": "model.vision.image_size", "max_length": "model.text.max_length"}
    return apply_overrides(cfg, {model_paths.get(k, f"finetune.{k}"): v for k, v in changes.items()})


def check_shardable(cfg, workers: int, where: str = "workers") -> None:
    """Each worker needs an equal shard of every global batch (DDP averages the shards' mean
    gradients, so unequal shards would weigh examples unequally), and pre-training needs at
    least 2 examples per shard (ITM draws its negatives within the shard)."""
    if workers < 1:
        raise ConfigError(f"{where}: must be at least 1, got {workers}")
    if workers == 1:
        return
    sizes = [("finetune.batch_size", cfg.finetune.batch_size, 1)]
    if cfg.pretrain.enabled:
        sizes.insert(0, ("pretrain.batch_size", cfg.pretrain.batch_size, 2))
    for path, size, least in sizes:
        if size % workers or size // workers < least:
            raise ConfigError(f"{path}: {size} does not split into {workers} equal shards of at least {least} "
                              f"example{'s' if least > 1 else ''} ({where} is {workers}): the workers share each "
                              f"global batch; use a multiple of {workers}"
                              + (f" (at least {least * workers})" if least > 1 else "") + " or other workers")


# --------------------------------------------------------------------------- dict / YAML / flat views


def to_dict(cfg) -> dict[str, Any]:
    """Nested plain dict (tuples become lists, so it is YAML/JSON friendly)."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(cfg))


def to_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def from_yaml(text: str, source: str = "<yaml>") -> Config:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {error}") from None
    return from_dict(data, source=source)


def flatten(cfg) -> dict[str, Any]:
    """Dotted keys -> leaf values of a config (or a nested dict), e.g. {"model.mim.mask_ratio": 0.75, ...}."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value):
        if isinstance(value, dict):
            for key, child in value.items():
                walk(f"{prefix}.{key}" if prefix else key, child)
        else:
            flat[prefix] = value

    walk("", cfg if isinstance(cfg, dict) else to_dict(cfg))
    return flat


def config_hash(data: dict, length: int = 12) -> str:
    """A stable short hash of a plain dict (order independent)."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def field_paths(cls=Config, prefix: str = "") -> dict[str, Any]:
    """Every leaf dotted path of a config class -> its type hint."""
    paths: dict[str, Any] = {}
    for f, hint in _fields(cls):
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hint):
            paths.update(field_paths(hint, path + "."))
        else:
            paths[path] = hint
    return paths


def suggest_path(path: str) -> str:
    """' (did you mean model.mim.mask_ratio?)' or '' for an unknown dotted path."""
    hint = difflib.get_close_matches(path, list(field_paths()), n=1, cutoff=0.6)
    if not hint:  # a misspelt leaf under a right parent: compare leaf names
        leaves = {p.rsplit(".", 1)[-1]: p for p in field_paths()}
        leaf_hint = difflib.get_close_matches(path.rsplit(".", 1)[-1], list(leaves), n=1, cutoff=0.6)
        hint = [leaves[leaf_hint[0]]] if leaf_hint else []
    return f" (did you mean {hint[0]}?)" if hint else ""


def _fields(cls):
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _coerce(value, hint, path: str):
    """Check `value` against a type hint; int -> float and list -> tuple are the
    only conversions (YAML writes 1 for 1.0 and lists for tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], path)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if type(value) is not hint:
            raise ConfigError(f"{path}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"{path}: unsupported config type {hint}")


def from_dict(data: dict, cls=Config, source: str | None = None, _prefix: str = ""):
    """Build a config from a (possibly partial) nested dict; missing fields keep
    their defaults. Unknown keys and wrong types raise ConfigError naming the path."""
    where = f"{source}: " if source else ""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}{_prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    known = dict(_fields(cls))
    by_name = {f.name: hint for f, hint in known.items()}
    kwargs = {}
    for key, value in data.items():
        path = f"{_prefix}{key}"
        if key not in by_name:
            raise ConfigError(f"{where}unknown config key {path!r}{suggest_path(path)}")
        hint = by_name[key]
        try:
            if dataclasses.is_dataclass(hint):
                kwargs[key] = from_dict(value, hint, None, path + ".")
            else:
                kwargs[key] = _coerce(value, hint, path)
        except ConfigError as error:
            raise ConfigError(f"{where}{error}") from None
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise ConfigError(f"{where}{error}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """'model.mim.mask_ratio=0.5' -> ('model.mim.mask_ratio', 0.5); the value is YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected path=value, e.g. model.mim.mask_ratio=0.5")
    path, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string; users mean the number
    return path.strip(), value


def apply_overrides(cfg: Config, overrides) -> Config:
    """Apply dotted overrides: a list of 'path=value' strings or a {path: value} dict."""
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = [parse_override(o) if isinstance(o, str) else o for o in overrides]
    data = to_dict(cfg)
    paths = field_paths()
    for path, value in items:
        if path not in paths:
            raise ConfigError(f"unknown config path {path!r}{suggest_path(path)}")
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return from_dict(data)

