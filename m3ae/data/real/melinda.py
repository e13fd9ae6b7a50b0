"""MELINDA figure classification: melinda/{train,dev,test}.csv with columns
figure_file, caption, i_meth, p_meth, i_meth_label, p_meth_label; images
melinda/melinda_images/<figure_file>. The label is `p_meth_label` (as the
paper's fine-tuning script); classes are the sorted distinct values over all
splits. Missing images are skipped with a counted warning.

    rows = read_rows(folder)            # every row of the three files
    classes = label_order(rows)         # the head's classes, the official order
    images, captions, labels = with_images("train", rows["train"])
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

Rows = tuple[list[Path], list[str], list[str]]  # image paths, captions, label names


def read_rows(folder: Path) -> dict[str, Rows]:
    """split -> every row of the split's file, whether or not its image exists."""
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
        out[split] = (images, captions, labels)
    return out


def label_order(rows: dict[str, Rows]) -> list[str]:
    """The classes in the official code's order (github.com/zhjohnchan/M3AE,
    prepro/make_arrow.py, make_arrow_melinda): the sorted distinct labels of every row of
    the three files, rows whose image is missing included."""
    return sorted({label for _, _, labels in rows.values() for label in labels})


def with_images(split: str, rows: Rows) -> Rows:
    """The rows whose image file exists."""
    exists = keep_existing_images("melinda", split, rows[0])
    return tuple([v for v, ok in zip(seq, exists) if ok] for seq in rows)
