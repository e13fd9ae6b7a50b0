"""Where each real dataset's files are under <data.root>: stated once, read by the readers
(vqa.py, pairs.py, melinda.py), `ablate data check` (check.py) and the check before a run:

    check_layout("/data/medvl", "vqa_rad")   # DataFormatError naming the missing path and the layout
    LAYOUTS["slake"].files["val"]            # ("validate.json",), relative to <data.root>/slake/

The readers still check every row; `check_layout` only finds a missing root or file in a
second, where a trial would find it after starting Ray and MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from m3ae.data.real.common import SPLITS, DataFormatError

ALL = "all"  # the split key of a dataset whose one file holds every split (MedICaT)
MEDVQA_CATEGORIES = ("Modality", "Organ", "Plane")  # one question file per category


@dataclass(frozen=True)
class Layout:
    """One dataset's files, relative to <data.root>/<name>/."""

    name: str
    files: dict[str, tuple[str, ...]]  # split (or ALL) -> its annotation files
    images: dict[str, str]  # split (or ALL) -> the folder of its images
    described: str  # the layout in words, for error messages

    def file(self, split: str, index: int = 0) -> str:
        return self.files[split if split in self.files else ALL][index]

    def image_dir(self, split: str) -> str:
        return self.images[split if split in self.images else ALL]

    def needed(self) -> list[str]:
        """Every file, then every image folder (ending in "/"), relative to data.root."""
        files = dict.fromkeys(f"{self.name}/{f}" for names in self.files.values() for f in names)
        folders = dict.fromkeys(f"{self.name}/{d}/" for d in self.images.values())
        return [*files, *folders]


def _per_split(files, images) -> tuple[dict, dict]:
    """Files and image folder of each split from functions of the split's name."""
    return {s: tuple(files(s)) for s in SPLITS}, {s: images(s) for s in SPLITS}


MEDICAT_FILE = "release/s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl"

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("roco", *_per_split(lambda s: [f"{s}/radiology/captions.txt"], lambda s: f"{s}/radiology/images"),
           "roco/{train,val,test}/radiology/captions.txt (image_id<TAB>caption) and .../radiology/images/"),
    Layout("medicat", {ALL: (MEDICAT_FILE,)}, {ALL: "release/figures"},
           f"medicat/{MEDICAT_FILE} (JSON lines) and medicat/release/figures/"),
    Layout("vqa_rad", *_per_split(lambda s: [f"{s}set.json"], lambda s: "images"),
           "vqa_rad/{train,val,test}set.json and vqa_rad/images/"),
    Layout("slake", {"train": ("train.json",), "val": ("validate.json",), "test": ("test.json",)},
           {ALL: "imgs"}, "slake/{train,validate,test}.json and slake/imgs/"),
    Layout("medvqa_2019", *_per_split(lambda s: [f"{s}/QA/{c}.csv" for c in MEDVQA_CATEGORIES],
                                      lambda s: f"{s}/images"),
           "medvqa_2019/{train,val,test}/QA/{Modality,Organ,Plane}.csv and medvqa_2019/{split}/images/"),
    Layout("melinda", {"train": ("train.csv",), "val": ("dev.csv",), "test": ("test.csv",)},
           {ALL: "melinda_images"}, "melinda/{train,dev,test}.csv and melinda/melinda_images/"),
)}


def check_layout(root: str | None, dataset: str) -> None:
    """Raise DataFormatError unless `root` holds `dataset`'s files (datasets not in LAYOUTS,
    such as the generated synthmed ones, need nothing)."""
    if dataset not in LAYOUTS:
        return
    layout = LAYOUTS[dataset].described
    if not root:
        raise DataFormatError(f"dataset {dataset!r} is real data read from <data.root>/{dataset}/, and data.root is "
                              f"not set: pass --data-root DIR (or data: {{root: DIR}}) with {layout}; "
                              "see docs/data.md")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataFormatError(f"data.root {base} is not a folder (dataset {dataset!r} expects {layout} under it)")
    for relative in LAYOUTS[dataset].needed():
        path = base / relative
        if not (path.is_dir() if relative.endswith("/") else path.is_file()):
            raise DataFormatError(f"dataset {dataset!r}: missing {path} (expected under data.root {base}: {layout})")
