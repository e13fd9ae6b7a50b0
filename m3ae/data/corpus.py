"""The tokenizer's training corpus: the training texts of the pre-training data."""

from __future__ import annotations

from pathlib import Path

from m3ae.data.real import pairs as pairs_format
from m3ae.data.real.common import data_root
from m3ae.data.synthmed import tasks as synth


def _names(cfg) -> list[str]:
    return [name.strip() for name in cfg.data.pretrain.split("+")]


def pretrain_corpus(cfg) -> list[str]:
    texts: list[str] = []
    for name in _names(cfg):
        if name == "synth_pairs":
            texts += synth.synth_texts("synth_pairs", "train", cfg.data)
        elif name == "roco":
            texts += pairs_format.read_roco(data_root(cfg, "roco"), "train")[1]
        elif name == "medicat":
            texts += pairs_format.read_medicat(data_root(cfg, "medicat"), "train")[1]
        else:
            raise ValueError(f"data.pretrain: cannot train a tokenizer on {name!r} "
                             "(expected synth_pairs, roco, medicat or a '+' of them)")
    return texts


def pretrain_corpus_key(cfg) -> dict:
    """What the corpus depends on: synthmed settings, or the real data's location."""
    key: dict = {"pretrain": cfg.data.pretrain}
    if "synth_pairs" in _names(cfg):
        key["synth"] = synth.settings("synth_pairs", cfg.data, image_size=0)
    if any(n != "synth_pairs" for n in _names(cfg)):
        key["root"] = str(Path(cfg.data.root or "").expanduser().absolute())
    return key
