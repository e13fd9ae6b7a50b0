"""The class order of a real task's head, as the official code builds it from the dataset files.

    official_classes("vqa_rad", Path("/data/medvl"))   # ["yes", "no", "2", ...]: class i of a released head

The loaders give their labels in the same order (m3ae/data/builders.py); `ablate
import-m3ae --task` stores this list with a released fine-tuned head, and loading the
head matches its rows to the loader's labels by name (m3ae/train/checkpoint.py).
"""

from __future__ import annotations

from pathlib import Path

from m3ae.data.real import melinda, vqa
from m3ae.data.real.common import DataFormatError

DATASETS = (*vqa.VQA_DATASETS, "melinda")


def official_classes(dataset: str, root: Path) -> list[str]:
    """The classes of the official code's head for `dataset` (read under <root>/<dataset>/),
    in its index order: VQA answers as normalised here, MELINDA's p_meth_label values."""
    folder = Path(root).expanduser() / dataset
    if dataset not in DATASETS:
        raise ValueError(f"{dataset!r} has no classifier head: expected one of {list(DATASETS)}")
    if not folder.is_dir():
        raise DataFormatError(f"{dataset}: folder {folder} does not exist (see docs/data.md for the layout)")
    if dataset == "melinda":
        return melinda.label_order(melinda.read_rows(folder))
    return vqa.answer_order(vqa.read_questions(dataset, folder))
