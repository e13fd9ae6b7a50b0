"""What is on disk under a data root, against the published counts, with a manifest of each split's ids.

    report = check_root(Path("/data"))      # one SplitCheck per dataset and split
    report[0].ids_hash                      # the same hash = the same examples

Lists each split's rows as the files give them (before the loaders drop rows
whose image is missing), so a missing image shows up here as a count and a
path instead of a warning. Two users compare the hashes to know they fine-tune
and test on the same split; the official code's users could not tell which
VQA-RAD split its numbers used.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from m3ae.data.real.common import SPLITS, DataFormatError, read_text
from m3ae.data.real.layout import ALL, LAYOUTS, MEDVQA_CATEGORIES

# Published sizes (examples per split; images where the source gives them). None: no published count
# we could confirm. VQA-RAD: 3,064 train / 451 test questions; SLAKE: the English questions of its
# 4,919 / 1,053 / 1,061 split; VQA-Med-2019: 12,792 / 2,000 / 500 questions on 3,200 / 500 / 500
# images (ImageCLEF 2019 overview).
# ROCO radiology: 65,448 / 8,180 / 8,179 images, one caption each (before captions of fewer than 3
# words are dropped), as listed in github.com/razorx89/roco-dataset data/{train,validation,test}/
# radiology/ (validation and test: captions.txt; train: licences.txt, the same ids as captions.txt
# in the other two splits).
# MedICaT: github.com/allenai/medicat gives 217,060 figures in all, not how many are radiology (the
# subset used here); MELINDA: its split sizes were not found in a source we could read. Both stay None.
PUBLISHED: dict[str, dict[str, tuple[Optional[int], Optional[int]]]] = {
    "vqa_rad": {"train": (3064, None), "val": (None, None), "test": (451, None)},
    "slake": {"train": (4919, None), "val": (1053, None), "test": (1061, None)},
    "medvqa_2019": {"train": (12792, 3200), "val": (2000, 500), "test": (500, 500)},
    "melinda": {"train": (None, None), "val": (None, None), "test": (None, None)},
    "roco": {"train": (65448, 65448), "val": (8180, 8180), "test": (8179, 8179)},
    "medicat": {ALL: (None, None)},
}


@dataclass
class SplitCheck:
    dataset: str
    split: str  # train | val | test; medicat: all (its val/test are drawn from these, seed 42)
    examples: int = 0  # rows in the split's files
    images: int = 0  # distinct image files the rows name
    images_found: int = 0
    missing: list[str] = field(default_factory=list)  # image files named but absent (first 20)
    missing_count: int = 0
    ids_hash: str = ""  # sha256 (16 hex) of the sorted example ids, one per line
    ids: list[str] = field(default_factory=list)
    error: str = ""  # the folder is absent or a file does not follow its format
    published_examples: Optional[int] = None
    published_images: Optional[int] = None

    @property
    def complete(self) -> bool:
        return not self.error and not self.missing_count


Rows = list[tuple[str, Path]]  # (example id, image path)


def _vqa_json(folder: Path, name: str, id_key: str, image_key: str, english: bool) -> dict[str, Rows]:
    layout, out = LAYOUTS[name], {}
    for split in SPLITS:
        path = folder / layout.file(split)
        rows = json.loads(read_text(path))
        if not isinstance(rows, list):
            raise DataFormatError(f"{path}: expected a JSON list of questions")
        out[split] = [(str(r[id_key]), folder / layout.image_dir(split) / r[image_key]) for r in rows
                      if not english or r.get("q_lang") == "en"]
    return out


def _vqa_rad(folder: Path) -> dict[str, Rows]:
    return _vqa_json(folder, "vqa_rad", "qid", "image_name", False)


def _slake(folder: Path) -> dict[str, Rows]:
    return _vqa_json(folder, "slake", "qid", "img_name", True)


def _medvqa_2019(folder: Path) -> dict[str, Rows]:
    layout, out = LAYOUTS["medvqa_2019"], {}
    for split in SPLITS:
        out[split] = []
        for index, category in enumerate(MEDVQA_CATEGORIES):
            for line in read_text(folder / layout.file(split, index)).strip().splitlines():
                image_id, question = line.split("|")[:2]
                out[split].append((f"{category}:{image_id.strip()}:{question.strip()}",
                                   folder / layout.image_dir(split) / f"{image_id.strip()}.jpg"))
    return out


def _melinda(folder: Path) -> dict[str, Rows]:
    layout, out = LAYOUTS["melinda"], {}
    for split in SPLITS:
        with io.StringIO(read_text(folder / layout.file(split)), newline="") as handle:
            out[split] = [(r["figure_file"], folder / layout.image_dir(split) / r["figure_file"])
                          for r in csv.DictReader(handle)]
    return out


def _roco(folder: Path) -> dict[str, Rows]:
    layout, out = LAYOUTS["roco"], {}
    for split in SPLITS:
        lines = read_text(folder / layout.file(split)).splitlines()
        ids = [line.split("\t", 1)[0].strip() for line in lines if line.strip()]
        out[split] = [(i, folder / layout.image_dir(split) / f"{i}.jpg") for i in ids]
    return out


def _medicat(folder: Path) -> dict[str, Rows]:
    layout = LAYOUTS["medicat"]
    records = [json.loads(line) for line in read_text(folder / layout.file(ALL)).splitlines() if line.strip()]
    figures = [f"{r['pdf_hash']}_{r['fig_uri']}" for r in records if r.get("radiology")]
    return {ALL: [(figure, folder / layout.image_dir(ALL) / figure) for figure in figures]}


LISTINGS: dict[str, Callable[[Path], dict[str, Rows]]] = {
    "vqa_rad": _vqa_rad, "slake": _slake, "medvqa_2019": _medvqa_2019, "melinda": _melinda,
    "roco": _roco, "medicat": _medicat,
}


def ids_hash(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def check_dataset(root: Path, name: str) -> list[SplitCheck]:
    """One dataset's splits; a missing folder or a malformed file is reported, not raised."""
    published = PUBLISHED[name]
    folder = root / name
    if not folder.is_dir():
        return [SplitCheck(name, split, error=f"no folder {folder}") for split in published]
    try:
        listing = LISTINGS[name](folder)
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as error:
        message = str(error) if isinstance(error, DataFormatError) else f"{type(error).__name__}: {error}"
        return [SplitCheck(name, split, error=message) for split in published]
    checks = []
    for split, rows in listing.items():
        images = list(dict.fromkeys(path for _, path in rows))
        missing = [str(p) for p in images if not p.is_file()]
        ids = [i for i, _ in rows]
        checks.append(SplitCheck(name, split, examples=len(rows), images=len(images),
                                 images_found=len(images) - len(missing), missing=missing[:20],
                                 missing_count=len(missing), ids_hash=ids_hash(ids), ids=sorted(ids),
                                 published_examples=published[split][0], published_images=published[split][1]))
    return checks


def check_root(root: Path) -> list[SplitCheck]:
    return [check for name in LISTINGS for check in check_dataset(root, name)]
