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

    questions = read_questions("vqa_rad", folder)   # every question in the files
    answers = answer_order(questions)               # the head's classes, the official order
    rows = with_images("vqa_rad", "train", questions["train"])
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from m3ae.data.answers import label_set, normalize_answer
from m3ae.data.real.common import SPLITS, DataFormatError, keep_existing_images, read_text, require_file
from m3ae.data.real.layout import LAYOUTS, MEDVQA_CATEGORIES

ANSWER_TYPES = {"closed": 0, "open": 1}
JSON_FIELDS = {"vqa_rad": ("image_name", None), "slake": ("img_name", "en")}  # image field, language kept
VQA_DATASETS = ("vqa_rad", "slake", "medvqa_2019")


@dataclass
class VQARows:
    images: list[Path]
    questions: list[str]
    answers: list[str]  # normalised
    answer_types: list[int]


def read_questions(name: str, folder: Path) -> dict[str, VQARows]:
    """split -> every question of dataset `name`'s files (SLAKE: the English ones), whether
    or not its image exists."""
    if name == "medvqa_2019":
        return {s: _read_medvqa_2019(folder, s) for s in SPLITS}
    image_key, language = JSON_FIELDS[name]
    return {s: _read_json(folder, name, s, image_key, language) for s in SPLITS}


def answer_order(questions: dict[str, VQARows]) -> list[str]:
    """The answer classes in the official code's order (github.com/zhjohnchan/M3AE,
    prepro/make_arrow.py, make_arrow_vqa): its ans2label takes every distinct answer of
    train, val, test in order of first appearance, before it drops the questions whose
    image is missing, so we do too: a released head's class i is answer i here."""
    return label_set({s: rows.answers for s, rows in questions.items()})


def with_images(name: str, split: str, rows: VQARows) -> VQARows:
    """The questions whose image file exists (at most one missing image per split is tolerated)."""
    exists = keep_existing_images(name, split, rows.images, max_missing=1)
    keep = lambda seq: [v for v, ok in zip(seq, exists) if ok]  # noqa: E731
    return VQARows(keep(rows.images), keep(rows.questions), keep(rows.answers), keep(rows.answer_types))


def _read_medvqa_2019(folder: Path, split: str) -> VQARows:
    layout = LAYOUTS["medvqa_2019"]
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
    return rows


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
    return rows
