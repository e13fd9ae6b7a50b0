"""ROCO and MedICaT image-caption pairs (pre-training; ROCO also retrieval).

ROCO: roco/{train,val,test}/radiology/captions.txt, one `image_id<TAB>caption`
per line, images roco/{split}/radiology/images/<image_id>.jpg. Rows without
exactly two fields and captions under 3 words are skipped (counted), as the
paper's code does; val and test keep 2,000 pairs after a seeded shuffle (the
retrieval protocol).

MedICaT: medicat/release/s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl,
one JSON object per line (pdf_hash, fig_uri, s2_caption, s2orc_references,
radiology), images medicat/release/figures/<pdf_hash>_<fig_uri>; only
radiology figures; a seeded shuffle (42) puts the last 2 x 1,000 in val and
test (fewer when the file is small: a tenth each). The caption and each
reference of 3+ words are separate texts of the same image.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from m3ae.data.real.common import DataFormatError, keep_existing_images, read_text, require_file, warn_skipped
from m3ae.data.real.layout import LAYOUTS

MIN_WORDS = 3
RETRIEVAL_HELD = 2000
ROCO, MEDICAT = LAYOUTS["roco"], LAYOUTS["medicat"]


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", str(text).strip())


def read_roco(folder: Path, split: str) -> tuple[list[Path], list[str]]:
    """(image path per pair, caption per pair) of one ROCO split."""
    path = require_file(folder / ROCO.file(split), ROCO.described)
    lines = read_text(path).splitlines()
    rows, malformed, short = [], [], 0
    for lineno, line in enumerate(lines, start=1):
        fields = line.strip().split("\t")
        if len(fields) != 2:
            if line.strip():
                malformed.append(lineno)
            continue
        caption = _clean(fields[1])
        if len(caption.split()) < MIN_WORDS:
            short += 1
            continue
        rows.append((folder / ROCO.image_dir(split) / f"{fields[0].strip()}.jpg", caption))
    warn_skipped(f"roco {split}: rows of {path} without exactly 2 tab-separated fields", len(malformed),
                 len(lines), f"first at line {malformed[0]}" if malformed else "")
    warn_skipped(f"roco {split}: captions of {path} with fewer than {MIN_WORDS} words", short, len(lines), "")
    if split != "train":
        random.Random(42).shuffle(rows)
        rows = rows[:RETRIEVAL_HELD]
    return _existing("roco", split, rows, path)


def read_medicat(folder: Path, split: str) -> tuple[list[Path], list[str]]:
    """(image path per pair, text per pair) of one MedICaT split."""
    path = require_file(folder / MEDICAT.file(split), MEDICAT.described)
    samples = []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(f"{path}:{lineno}: not valid JSON ({error.msg})") from None
        missing = [k for k in ("pdf_hash", "fig_uri", "radiology") if k not in sample]
        if missing:
            raise DataFormatError(f"{path}:{lineno}: missing field(s) {missing} "
                                  "(expected pdf_hash, fig_uri, s2_caption, s2orc_references, radiology)")
        if sample["radiology"]:
            samples.append(sample)
    held = min(1000, len(samples) // 10)
    order = list(range(len(samples)))
    random.Random(42).shuffle(order)
    chosen = {"train": order[:len(order) - 2 * held], "val": order[len(order) - 2 * held:len(order) - held],
              "test": order[len(order) - held:]}[split]
    rows = []
    for index in chosen:
        sample = samples[index]
        texts = [sample.get("s2_caption") or ""] + list(sample.get("s2orc_references") or [])
        image = folder / MEDICAT.image_dir(split) / f"{sample['pdf_hash']}_{sample['fig_uri']}"
        rows += [(image, _clean(t)) for t in texts if len(_clean(t).split()) >= MIN_WORDS]
    return _existing("medicat", split, rows, path)


def _existing(name: str, split: str, rows: list, source: Path) -> tuple[list[Path], list[str]]:
    if not rows:
        raise DataFormatError(f"{name} {split}: no usable pairs in {source}")
    exists = keep_existing_images(name, split, [r[0] for r in rows])
    rows = [r for r, ok in zip(rows, exists) if ok]
    return [r[0] for r in rows], [r[1] for r in rows]
