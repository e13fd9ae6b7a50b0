"""MELINDA figure classification: melinda/{train,dev,test}.csv with columns
figure_file, caption, i_meth, p_meth, i_meth_label, p_meth_label; images
melinda/melinda_images/<figure_file>. The label is `p_meth_label` (as the
paper's fine-tuning script); classes are the sorted distinct values over all
splits. Missing images are skipped with a counted warning.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from m3ae.data.real.common import SPLITS, DataFormatError, keep_existing_images, read_text, require_file
from m3ae.data.real.layout import LAYOUTS

COLUMNS = ("figure_file", "caption", "i_meth", "p_meth", "i_meth_label", "p_meth_label")
LABEL = "p_meth_label"
LAYOUT = LAYOUTS["melinda"]


def read_melinda(folder: Path) -> dict[str, tuple[list[Path], list[str], list[str]]]:
    """split -> (image paths, captions, label names)."""
    out = {}
    for split in SPLITS:
        path = require_file(folder / LAYOUT.file(split), f"{LAYOUT.described}; columns {list(COLUMNS)}")
        with io.StringIO(read_text(path), newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataFormatError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
            images, captions, labels = [], [], []
            for row_number, row in enumerate(reader, start=2):  # line 1 is the header
                if not row["figure_file"] or not row[LABEL]:
                    raise DataFormatError(f"{path}:{row_number}: empty figure_file or {LABEL}")
                images.append(folder / LAYOUT.image_dir(split) / row["figure_file"])
                captions.append(" ".join((row["caption"] or "").split()))
                labels.append(row[LABEL].strip())
        if not images:
            raise DataFormatError(f"{path}: no rows")
        exists = keep_existing_images("melinda", split, images)
        keep = lambda seq: [v for v, ok in zip(seq, exists) if ok]  # noqa: E731, B023
        out[split] = (keep(images), keep(captions), keep(labels))
    return out
