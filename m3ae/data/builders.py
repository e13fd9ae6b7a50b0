"""The DATASETS registry entries: name -> factory(split, cfg, tokenizer, cache_dir) -> TaskDataset.

Synthetic datasets come from the synthmed cache; real ones are read from
<data.root>/<name>/ in their published formats (see m3ae/data/real/).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from m3ae.data import SPLITS
from m3ae.data.dataset import ArrayImages, FileImages, TaskDataset, concat, subset
from m3ae.data.real import melinda as melinda_format
from m3ae.data.real import pairs as pairs_format
from m3ae.data.real import vqa as vqa_format
from m3ae.data.real.common import data_root
from m3ae.data.synthmed import load_split
from m3ae.registry import DATASETS


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


# ------------------------------------------------------------------ synthmed


def _synth(task: str, kind: str):
    def factory(split: str, cfg, tokenizer, cache_dir: Path) -> TaskDataset:
        data = load_split(task, split, cfg.data, cfg.model.vision.image_size, cache_dir)
        records = data.records
        common = dict(name=task, split=split, kind=kind, images=ArrayImages(data.images), texts=records["texts"],
                      image_index=np.asarray(records["image_index"]))
        if kind == "vqa":
            answers = data.meta["answers"]
            ids = {a: i for i, a in enumerate(answers)}
            return TaskDataset(**common, targets=[((ids[a],), (1.0,)) for a in records["answers"]],
                               answer_types=np.asarray(records["answer_types"]), answers=answers,
                               answer_texts=records["answers"])
        if kind == "cls":
            return TaskDataset(**common, targets=list(records["labels"]), classes=data.meta["classes"])
        return TaskDataset(**common)

    factory.__doc__ = f"synthmed {task} ({kind})"
    return factory


DATASETS.register("synth_pairs")(_synth("synth_pairs", "pairs"))
DATASETS.register("synth_vqa")(_synth("synth_vqa", "vqa"))
DATASETS.register("synth_cls")(_synth("synth_cls", "cls"))
DATASETS.register("synth_irtr")(_synth("synth_irtr", "retrieval"))

# ------------------------------------------------------------------ real formats


def _pairs(name: str, paths: list[Path], texts: list[str], split: str, cfg) -> TaskDataset:
    """Pairs sharing an image file share an image id."""
    unique: dict[Path, int] = {}
    index = [unique.setdefault(p, len(unique)) for p in paths]
    images = FileImages(list(unique), cfg.model.vision.image_size)
    return TaskDataset(name=name, split=split, kind="pairs", images=images,
                       texts=texts, image_index=np.asarray(index))


@DATASETS.register("roco")
def roco(split: str, cfg, tokenizer, cache_dir: Path) -> TaskDataset:
    """ROCO pairs (pre-training and retrieval: val/test hold 2,000 pairs)."""
    return _pairs("roco", *pairs_format.read_roco(data_root(cfg, "roco"), split), split, cfg)


@DATASETS.register("medicat")
def medicat(split: str, cfg, tokenizer, cache_dir: Path) -> TaskDataset:
    """MedICaT radiology figure-caption pairs."""
    return _pairs("medicat", *pairs_format.read_medicat(data_root(cfg, "medicat"), split), split, cfg)


def _vqa(name: str):
    def factory(split: str, cfg, tokenizer, cache_dir: Path) -> TaskDataset:
        questions = vqa_format.read_questions(name, data_root(cfg, name))
        answers = vqa_format.answer_order(questions)
        ids = {a: i for i, a in enumerate(answers)}
        rows = vqa_format.with_images(name, split, questions[split])
        unique: dict[Path, int] = {}
        index = [unique.setdefault(p, len(unique)) for p in rows.images]
        return TaskDataset(name=name, split=split, kind="vqa",
                           images=FileImages(list(unique), cfg.model.vision.image_size),
                           texts=rows.questions, image_index=np.asarray(index),
                           targets=[((ids[a],), (1.0,)) for a in rows.answers],
                           answer_types=np.asarray(rows.answer_types), answers=answers, answer_texts=rows.answers)

    factory.__doc__ = f"{name} questions (answer label set over all splits, in the official code's order)"
    return factory


DATASETS.register("vqa_rad")(_vqa("vqa_rad"))
DATASETS.register("slake")(_vqa("slake"))
DATASETS.register("medvqa_2019")(_vqa("medvqa_2019"))


@DATASETS.register("melinda")
def melinda(split: str, cfg, tokenizer, cache_dir: Path) -> TaskDataset:
    """MELINDA figures with captions, label p_meth_label."""
    rows = melinda_format.read_rows(data_root(cfg, "melinda"))
    classes = melinda_format.label_order(rows)
    ids = {c: i for i, c in enumerate(classes)}
    images, captions, labels = melinda_format.with_images(split, rows[split])
    return TaskDataset(name="melinda", split=split, kind="cls",
                       images=FileImages(images, cfg.model.vision.image_size), texts=captions,
                       image_index=np.arange(len(images)), targets=[ids[label] for label in labels], classes=classes)
