"""Data: the embedded synthmed benchmark, real-format loaders, the tokenizer and the collate path.

    tokenizer = build_tokenizer(cfg, cache_dir)
    vocab = text_vocab(tokenizer)
    train = build_dataset("synth_vqa", "train", cfg, tokenizer, cache_dir, fraction=cfg.finetune.train_fraction)
    for batch in make_loader(train, 32, train=True, cfg=cfg, seed=cfg.seed): ...

Dataset names are DATASETS registry entries (synth_pairs, synth_vqa, synth_cls,
synth_irtr, roco, medicat, vqa_rad, slake, medvqa_2019, melinda), or
pre-training pair datasets joined with '+' ("roco+medicat").

The names below are imported from their modules on first use: the light parts of the
package (synthmed's cache settings, the real datasets' layouts) import without torch.
"""

from __future__ import annotations

import importlib

SPLITS = ("train", "val", "test")

_EXPORTS = {  # name -> the module that defines it
    "build_dataset": "m3ae.data.builders", "build_tokenizer": "m3ae.data.tokenizer", "text_vocab": "m3ae.data.tokenizer",
    "make_loader": "m3ae.data.collate", "normalize": "m3ae.data.collate", "denormalize": "m3ae.data.collate",
    "IMAGE_MEAN": "m3ae.batch", "IMAGE_STD": "m3ae.batch", "TaskDataset": "m3ae.data.dataset",
    "subset": "m3ae.data.dataset", "DataFormatError": "m3ae.data.real.common",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'm3ae.data' has no attribute {name!r}")


__all__ = ["build_tokenizer", "text_vocab", "build_dataset", "make_loader", "subset", "TaskDataset",
           "DataFormatError", "IMAGE_MEAN", "IMAGE_STD", "normalize", "denormalize", "SPLITS"]
