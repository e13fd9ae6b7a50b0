"""The files each real dataset must have under <data.root>, checked before a run starts:

    check_layout("/data/medvl", "vqa_rad")   # DataFormatError naming the missing path and the layout

The readers (vqa.py, pairs.py, melinda.py) still check every row; this only finds a missing
root or folder in a second, where a trial would find it after starting Ray and MLflow.
"""

from __future__ import annotations

from pathlib import Path

from m3ae.data.real.common import SPLITS, DataFormatError
from m3ae.data.real.melinda import FILES as MELINDA_FILES
from m3ae.data.real.pairs import MEDICAT_FILE

_MEDVQA = ("Modality", "Organ", "Plane")

# dataset -> (the files and folders (ending in "/") it needs, relative to data.root; its layout in words)
LAYOUTS: dict[str, tuple[list[str], str]] = {
    "roco": ([p for s in SPLITS for p in (f"roco/{s}/radiology/captions.txt", f"roco/{s}/radiology/images/")],
             "roco/{train,val,test}/radiology/captions.txt (image_id<TAB>caption) and .../radiology/images/"),
    "medicat": ([f"medicat/{MEDICAT_FILE}", "medicat/release/figures/"],
                f"medicat/{MEDICAT_FILE} (JSON lines) and medicat/release/figures/"),
    "vqa_rad": ([f"vqa_rad/{s}set.json" for s in SPLITS] + ["vqa_rad/images/"],
                "vqa_rad/{train,val,test}set.json and vqa_rad/images/"),
    "slake": (["slake/train.json", "slake/validate.json", "slake/test.json", "slake/imgs/"],
              "slake/{train,validate,test}.json and slake/imgs/"),
    "medvqa_2019": ([f"medvqa_2019/{s}/QA/{c}.csv" for s in SPLITS for c in _MEDVQA]
                    + [f"medvqa_2019/{s}/images/" for s in SPLITS],
                    "medvqa_2019/{train,val,test}/QA/{Modality,Organ,Plane}.csv and medvqa_2019/{split}/images/"),
    "melinda": ([f"melinda/{name}" for name in MELINDA_FILES.values()] + ["melinda/melinda_images/"],
                "melinda/{train,dev,test}.csv and melinda/melinda_images/"),
}


def check_layout(root: str | None, dataset: str) -> None:
    """Raise DataFormatError unless `root` holds `dataset`'s files (datasets not in LAYOUTS,
    such as the generated synthmed ones, need nothing)."""
    if dataset not in LAYOUTS:
        return
    needed, layout = LAYOUTS[dataset]
    if not root:
        raise DataFormatError(f"dataset {dataset!r} is real data read from <data.root>/{dataset}/, and data.root is "
                              f"not set: pass --data-root DIR (or data: {{root: DIR}}) with {layout}; "
                              "see docs/data.md")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataFormatError(f"data.root {base} is not a folder (dataset {dataset!r} expects {layout} under it)")
    for relative in needed:
        path = base / relative
        if not (path.is_dir() if relative.endswith("/") else path.is_file()):
            raise DataFormatError(f"dataset {dataset!r}: missing {path} (expected under data.root {base}: {layout})")
