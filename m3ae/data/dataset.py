"""`TaskDataset`: one dataset type for every task, synthetic or real.

An example is an image, a text, and the task's target. Images are held as a
table (a uint8 array, or files read and resized on access) and examples point
into it with `image_index`, so several texts or questions share an image, and
retrieval knows which texts match which image (`Example.image_id`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

KINDS = ("pairs", "vqa", "cls", "retrieval")
CLOSED, OPEN = 0, 1  # answer types


class Example(NamedTuple):
    image: torch.Tensor  # [3, S, S] uint8
    text: str
    target: object  # vqa: (label ids, scores); cls: int; pairs/retrieval: None
    answer_type: int  # vqa: 0 closed / 1 open; else -1
    image_id: int  # examples with the same id share the image


class ArrayImages:
    """Images in memory (or memory-mapped): [M, S, S] grey or [M, S, S, 3] RGB uint8."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = torch.from_numpy(np.array(self.array[i]))  # copy out of the memory map
        if image.ndim == 2:
            return image.unsqueeze(0).expand(3, -1, -1)
        return image.permute(2, 0, 1)


class FileImages:
    """Images read from files on access, converted to RGB and resized to size x size."""

    def __init__(self, paths: Sequence[Path], size: int):
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            img = img.convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC)
            return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


class ConcatImages:
    """Several image tables one after another."""

    def __init__(self, parts: Sequence):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> torch.Tensor:
        part = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.parts[part][i - int(self.offsets[part])]


@dataclass
class TaskDataset(Dataset):
    """Examples of one split of one dataset. `answers` is the VQA label set
    (else []), `num_classes` the number of classes (cls, else 0)."""

    name: str
    split: str
    kind: str  # one of KINDS
    images: object  # ArrayImages | FileImages
    texts: list[str]
    image_index: np.ndarray  # [N] row of each example's image
    targets: Optional[list] = None  # vqa: (ids, scores) per example; cls: int per example
    answer_types: Optional[np.ndarray] = None  # [N] vqa only
    answers: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    answer_texts: Optional[list[str]] = None  # vqa: the answer of each example as text (for display)
    tokenizer: object = None  # the collate path tokenizes texts with it

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown dataset kind {self.kind!r}: expected one of {KINDS}")
        if len(self.texts) == 0:
            raise ValueError(f"{self.name} {self.split}: no examples")
        self.image_index = np.asarray(self.image_index, dtype=np.int64)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def label_names(self) -> list[str]:
        """What a classifier head's outputs stand for, in index order: the answers (vqa) or the classes (cls)."""
        return self.answers if self.kind == "vqa" else self.classes

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> Example:
        row = int(self.image_index[i])
        target = self.targets[i] if self.targets is not None else None
        answer_type = int(self.answer_types[i]) if self.answer_types is not None else -1
        return Example(self.images[row], self.texts[i], target, answer_type, row)

    def label_text(self, i: int) -> str:
        """The target of example i in words (for display)."""
        if self.kind == "vqa":
            return self.answer_texts[i] if self.answer_texts else self.answers[self.targets[i][0][0]]
        if self.kind == "cls":
            return self.classes[self.targets[i]]
        return ""

    def take(self, indices) -> "TaskDataset":
        """A dataset of the examples at `indices` (images shared, label sets unchanged)."""
        indices = np.asarray(indices, dtype=np.int64)
        pick = lambda seq: None if seq is None else [seq[i] for i in indices]  # noqa: E731
        return replace(self, texts=pick(self.texts), image_index=self.image_index[indices],
                       targets=pick(self.targets), answer_texts=pick(self.answer_texts),
                       answer_types=None if self.answer_types is None else self.answer_types[indices])


def subset(dataset: TaskDataset, fraction: float, seed: int = 0) -> TaskDataset:
    """A deterministic random share of a dataset's examples (at least one), in
    their original order: the data-efficiency studies' `finetune.train_fraction`."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return dataset
    n = max(1, round(len(dataset) * fraction))
    keep = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:n])
    return dataset.take(keep)


def concat(datasets: Sequence[TaskDataset], name: str) -> TaskDataset:
    """Pre-training pairs of several datasets as one ("roco+medicat")."""
    kinds = {d.kind for d in datasets}
    if kinds - {"pairs", "retrieval"}:
        raise ValueError(f"{name}: only image-text pair datasets can be concatenated, got kinds {sorted(kinds)}")
    offsets = np.cumsum([0] + [len(d.images) for d in datasets])
    return TaskDataset(name=name, split=datasets[0].split, kind="pairs",
                       images=ConcatImages([d.images for d in datasets]),
                       texts=[t for d in datasets for t in d.texts],
                       image_index=np.concatenate([d.image_index + o for d, o in zip(datasets, offsets)]))
