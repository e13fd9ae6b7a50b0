"""Med-VQA question files: VQA-RAD, SLAKE (English) and VQA-Med-2019.

VQA-RAD: vqa_rad/{train,val,test}set.json, a JSON list of objects with qid,
image_name, question, answer (string or number), answer_type (OPEN/CLOSED);
images vqa_rad/images/<image_name>.
SLAKE: slake/{train,validate,test}.json, the same fields with img_name and
q_lang; images slake/imgs/<img_name>; only q_lang == "en".
VQA-Med-2019: medvqa_2019/{train,val,test}/QA/{Modality,Organ,Plane}.csv, lines
`image_id|question|answer`, images medvqa_2019/{split}/images/<image_id>.jpg;
every question is OPEN.

A row missing a field, or with an answer type other than OPEN/CLOSED, is an
error naming the file and row. As in the paper's code at most one missing
image per split is tolerated (skipped with a warning).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from m3ae.data.answers import normalize_answer
from m3ae.data.real.common import SPLITS, DataFormatError, keep_existing_images, read_text, require_file
from m3ae.data.real.layout import LAYOUTS, MEDVQA_CATEGORIES

ANSWER_TYPES = {"closed": 0, "open": 1}


@dataclass
class VQARows:
    images: list[Path]
    questions: list[str]
    answers: list[str]  # normalised
    answer_types: list[int]


def read_vqa_rad(folder: Path) -> dict[str, VQARows]:
    return {s: _read_json(folder, "vqa_rad", s, "image_name", None) for s in SPLITS}


def read_slake(folder: Path) -> dict[str, VQARows]:
    return {s: _read_json(folder, "slake", s, "img_name", "en") for s in SPLITS}


def read_medvqa_2019(folder: Path) -> dict[str, VQARows]:
    layout = LAYOUTS["medvqa_2019"]
    out = {}
    for split in SPLITS:
        rows = VQARows([], [], [], [])
        for index in range(len(MEDVQA_CATEGORIES)):
            path = require_file(folder / layout.file(split, index), f"{layout.described}, lines image_id|question|answer")
            for lineno, line in enumerate(read_text(path).strip().splitlines(), start=1):
                fields = line.split("|")
                if len(fields) != 3:
                    raise DataFormatError(f"{path}:{lineno}: expected image_id|question|answer, got {line!r}")
                rows.images.append(folder / layout.image_dir(split) / f"{fields[0].strip()}.jpg")
                rows.questions.append(fields[1].strip())
                rows.answers.append(normalize_answer(fields[2]))
                rows.answer_types.append(ANSWER_TYPES["open"])
        out[split] = _existing("medvqa_2019", split, rows)
    return out


def _read_json(folder: Path, name: str, split: str, image_key: str, language) -> VQARows:
    layout = LAYOUTS[name]
    path, image_dir = folder / layout.file(split), folder / layout.image_dir(split)
    require_file(path, f"{name} question file (a JSON list of objects with qid, {image_key}, question, "
                       "answer, answer_type)")
    try:
        samples = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(samples, list):
        raise DataFormatError(f"{path}: expected a JSON list of questions, got {type(samples).__name__}")
    rows = VQARows([], [], [], [])
    for index, sample in enumerate(samples):
        where = f"{path} row {index} (qid {sample.get('qid', '?') if isinstance(sample, dict) else '?'})"
        required = ("qid", image_key, "question", "answer", "answer_type") + (("q_lang",) if language else ())
        missing = [k for k in required if not isinstance(sample, dict) or k not in sample]
        if missing:
            raise DataFormatError(f"{where}: missing field(s) {missing}")
        if language and sample["q_lang"] != language:
            continue
        answer_type = str(sample["answer_type"]).strip().lower()
        if answer_type not in ANSWER_TYPES:
            raise DataFormatError(f"{where}: unknown answer_type {sample['answer_type']!r} "
                                  "(expected OPEN or CLOSED)")
        rows.images.append(image_dir / sample[image_key])
        rows.questions.append(str(sample["question"]).strip())
        rows.answers.append(normalize_answer(sample["answer"]))
        rows.answer_types.append(ANSWER_TYPES[answer_type])
    if not rows.questions:
        raise DataFormatError(f"{path}: no questions" + (f" with q_lang {language!r}" if language else ""))
    return _existing(name, split, rows)


def _existing(name: str, split: str, rows: VQARows) -> VQARows:
    exists = keep_existing_images(name, split, rows.images, max_missing=1)
    keep = lambda seq: [v for v, ok in zip(seq, exists) if ok]  # noqa: E731
    return VQARows(keep(rows.images), keep(rows.questions), keep(rows.answers), keep(rows.answer_types))
