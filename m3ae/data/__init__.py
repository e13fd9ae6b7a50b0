"""Data: the embedded synthmed benchmark, real-format loaders, the tokenizer and the collate path.

    tokenizer = build_tokenizer(cfg, cache_dir)
    vocab = text_vocab(tokenizer)
    train = build_dataset("synth_vqa", "train", cfg, tokenizer, cache_dir, fraction=cfg.finetune.train_fraction)
    for batch in make_loader(train, 32, train=True, cfg=cfg, seed=cfg.seed): ...

Dataset names are DATASETS registry entries (synth_pairs, synth_vqa, synth_cls,
synth_irtr, roco, medicat, vqa_rad, slake, medvqa_2019, melinda), or
pre-training pair datasets joined with '+' ("roco+medicat").
"""

from __future__ import annotations

from pathlib import Path

from m3ae.data import builders as _builders  # noqa: F401 - registers the DATASETS entries
from m3ae.data.collate import IMAGE_MEAN, IMAGE_STD, denormalize, make_loader, normalize
from m3ae.data.dataset import TaskDataset, concat, subset
from m3ae.data.real.common import DataFormatError
from m3ae.data.tokenizer import build_tokenizer, text_vocab
from m3ae.registry import DATASETS

SPLITS = ("train", "val", "test")


def build_dataset(name: str, split: str, cfg, tokenizer, cache_dir: Path, *, fraction: float = 1.0,
                  fraction_seed: int = 0) -> TaskDataset:
    """One split of a dataset, ready for `make_loader`.

    fraction < 1 keeps a deterministic random share of the examples (seeded by
    `fraction_seed`), for `finetune.train_fraction` on the training split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {list(SPLITS)}")
    parts = [DATASETS.get(part.strip())(split, cfg, tokenizer, Path(cache_dir)) for part in name.split("+")]
    dataset = parts[0] if len(parts) == 1 else concat(parts, name)
    dataset.tokenizer = tokenizer
    return subset(dataset, fraction, fraction_seed)


__all__ = ["build_tokenizer", "text_vocab", "build_dataset", "make_loader", "subset", "TaskDataset",
           "DataFormatError", "IMAGE_MEAN", "IMAGE_STD", "normalize", "denormalize", "SPLITS"]
