"""Real-format loaders on tiny fixtures written in each dataset's exact on-disk format."""

from __future__ import annotations

import csv
import json
import warnings

import pytest
import torch

from fixtures.real_datasets import WRITERS, write_image, write_all
from m3ae.config import apply_overrides, profile
from m3ae.data import DataFormatError, build_dataset, build_tokenizer, make_loader
from m3ae.data.answers import label_set, normalize_answer
from m3ae.data.real.classes import official_classes


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="module")
def cfg(root):
    return apply_overrides(profile("smoke"), {"data.root": str(root), "data.pretrain": "roco+medicat"})


@pytest.fixture(scope="module")
def tokenizer(cfg, tmp_path_factory):
    return build_tokenizer(cfg, tmp_path_factory.mktemp("cache"))


def _fresh(tmp_path, name, **kwargs):
    """A fresh copy of one dataset to break, and a config pointing at it."""
    WRITERS[name](tmp_path, **kwargs)
    return apply_overrides(profile("smoke"), {"data.root": str(tmp_path)})


def test_answer_normalisation():
    assert normalize_answer("Yes") == "yes"
    assert normalize_answer("The Brain") == "brain"
    assert normalize_answer("two") == "2" and normalize_answer(2) == "2"
    assert normalize_answer("left lung.") == "left lung"
    assert normalize_answer("dont know") == "don't know"
    assert normalize_answer("3.5 cm") == "3.5 cm"
    assert normalize_answer("ct w/contrast (iv)") == "ct w contrast iv"
    assert normalize_answer("Shed") == "shed"  # no contraction in the official code's table
    assert normalize_answer(" - x ") == "x"  # the spaces around a mark decide it, as given (not stripped first)
    assert label_set({"val": ["b", "a"], "train": ["a", "c"], "test": ["d", "a"]}) == ["a", "c", "b", "d"]


def test_roco_and_medicat_pairs(cfg, tokenizer, tmp_path):
    roco = build_dataset("roco", "train", cfg, tokenizer, tmp_path)
    assert roco.kind == "pairs" and len(roco) == 5 and roco.texts[0].startswith("Computed tomography")
    medicat = build_dataset("medicat", "train", cfg, tokenizer, tmp_path)
    # 24 radiology figures of 30; val/test take a tenth each (2 x 2); odd figures have a reference text too
    assert len(medicat.images) == 20 and len(medicat) > len(medicat.images)
    assert len(build_dataset("medicat", "test", cfg, tokenizer, tmp_path).images) == 2
    both = build_dataset("roco+medicat", "train", cfg, tokenizer, tmp_path)
    assert len(both) == len(roco) + len(medicat)
    assert len(set(both.image_index.tolist())) == len(roco.images) + len(medicat.images)
    batch = next(iter(make_loader(both, 8, train=True, cfg=cfg, seed=0)))
    assert batch.images.shape == (8, 3, 32, 32) and batch.labels is None
    # texts sharing a figure share an image id
    shared = [i for i in range(len(medicat)) if medicat.texts[i].startswith("The lesion in figure")]
    assert shared and all(medicat.image_index[i] == medicat.image_index[i - 1] for i in shared)


def test_roco_skips_malformed_and_short_rows_with_counted_warnings(tmp_path):
    cfg = _fresh(tmp_path, "roco", bad_rows=True)
    with pytest.warns(UserWarning) as caught:
        dataset = build_dataset("roco", "train", cfg, None, tmp_path)
    messages = " | ".join(str(w.message) for w in caught)
    assert "skipped 1 of 7" in messages and "line 6" in messages and "fewer than 3 words" in messages
    assert len(dataset) == 5


def test_missing_images_are_counted_and_never_silently_empty(tmp_path):
    cfg = _fresh(tmp_path, "roco")
    (tmp_path / "roco/train/radiology/images/ROCO_00001.jpg").unlink()
    with pytest.warns(UserWarning, match="skipped 1 of 5.*ROCO_00001.jpg"):
        assert len(build_dataset("roco", "train", cfg, None, tmp_path)) == 4
    for image in (tmp_path / "roco/train/radiology/images").iterdir():
        image.unlink()
    with pytest.raises(DataFormatError, match="none of the 5 image files exist"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_dataset("roco", "train", cfg, None, tmp_path)


def test_missing_files_name_the_path_and_layout(tmp_path):
    cfg = _fresh(tmp_path, "vqa_rad")
    (tmp_path / "vqa_rad/testset.json").unlink()
    with pytest.raises(DataFormatError, match=r"vqa_rad/testset.json.*expected layout"):
        build_dataset("vqa_rad", "train", cfg, None, tmp_path)
    with pytest.raises(DataFormatError, match="melinda.*does not exist"):
        build_dataset("melinda", "train", cfg, None, tmp_path)
    with pytest.raises(DataFormatError, match="data.root is not set"):
        build_dataset("slake", "train", profile("smoke"), None, tmp_path)


def test_vqa_rad(cfg, tokenizer, tmp_path):
    train = build_dataset("vqa_rad", "train", cfg, tokenizer, tmp_path)
    test = build_dataset("vqa_rad", "test", cfg, tokenizer, tmp_path)
    assert train.kind == "vqa" and len(train) == 9 and len(train.images) == 3
    assert train.answers == test.answers  # one label set over all splits
    assert {"yes", "no", "brain", "2", "left lung"} <= set(train.answers)
    assert train.answers.count("2") == 1  # "two" and 2 are one answer
    assert set(train.answer_types.tolist()) == {0, 1}
    batch = next(iter(make_loader(train, 9, train=False, cfg=cfg, seed=0)))
    assert batch.labels.shape == (9, len(train.answers)) and torch.all(batch.labels.sum(1) == 1)
    answers = [train.answers[i] for i in batch.labels.argmax(1).tolist()]
    assert answers == [normalize_answer(a) for a in train.answer_texts]


def test_vqa_unknown_answer_type_and_missing_field_name_the_row(tmp_path):
    cfg = _fresh(tmp_path, "vqa_rad")
    path = tmp_path / "vqa_rad/valset.json"
    rows = json.loads(path.read_text())
    rows[2]["answer_type"] = "YES/NO"
    path.write_text(json.dumps(rows))
    with pytest.raises(DataFormatError, match=r"valset.json row 2 \(qid \d+\): unknown answer_type 'YES/NO'"):
        build_dataset("vqa_rad", "train", cfg, None, tmp_path)
    del rows[1]["question"]
    rows[2]["answer_type"] = "OPEN"
    path.write_text(json.dumps(rows))
    with pytest.raises(DataFormatError, match=r"valset.json row 1 .*missing field\(s\) \['question'\]"):
        build_dataset("vqa_rad", "train", cfg, None, tmp_path)
    path.write_text("[{broken")
    with pytest.raises(DataFormatError, match="valset.json: not valid JSON"):
        build_dataset("vqa_rad", "train", cfg, None, tmp_path)


def test_vqa_tolerates_one_missing_image_per_split_as_the_paper(tmp_path):
    cfg = _fresh(tmp_path, "vqa_rad")
    (tmp_path / "vqa_rad/images/synpic00.jpg").unlink()
    with pytest.warns(UserWarning, match="skipped 3 of 9"):
        assert len(build_dataset("vqa_rad", "train", cfg, None, tmp_path)) == 6
    (tmp_path / "vqa_rad/images/synpic01.jpg").unlink()
    with pytest.raises(DataFormatError, match="2 image files are missing"):
        build_dataset("vqa_rad", "train", cfg, None, tmp_path)


def test_answer_order_is_the_official_codes(tmp_path):
    """The official ans2label: first appearance over train, val, test, counting the questions
    whose image is missing (dropped only afterwards); the loaders use that order."""
    cfg = _fresh(tmp_path, "vqa_rad")
    path = tmp_path / "vqa_rad/valset.json"
    rows = json.loads(path.read_text())
    rows.insert(0, {**rows[0], "qid": 999, "image_name": "synpic_absent.jpg", "answer": "Pancreas"})
    path.write_text(json.dumps(rows))
    # train: images 0..2 ask _QA[0:3], [1:4], [2:5]
    expected = ["yes", "no", "brain", "2", "left lung", "pancreas"]
    assert official_classes("vqa_rad", tmp_path) == expected
    with pytest.warns(UserWarning, match="skipped 1 of 10"):
        val = build_dataset("vqa_rad", "val", cfg, None, tmp_path)
    assert val.answers == expected and "pancreas" not in val.answer_texts
    assert build_dataset("vqa_rad", "train", cfg, None, tmp_path).label_names == expected
    WRITERS["melinda"](tmp_path)
    for file in ("train.csv", "dev.csv", "test.csv"):  # no "plot" figure has its image: the class stays
        for row in csv.DictReader((tmp_path / "melinda" / file).read_text().splitlines()):
            if row["p_meth_label"] == "plot":
                (tmp_path / "melinda/melinda_images" / row["figure_file"]).unlink()
    assert official_classes("melinda", tmp_path) == ["gel", "medical_imaging", "microscopy", "plot"]
    with pytest.warns(UserWarning, match="skipped 1 of 6"):
        train = build_dataset("melinda", "train", cfg, None, tmp_path)
    assert "plot" not in {train.label_text(i) for i in range(len(train))}
    assert train.label_names == ["gel", "medical_imaging", "microscopy", "plot"]
    with pytest.raises(ValueError, match="no classifier head"):
        official_classes("roco", tmp_path)


def test_slake_keeps_english_only(cfg, tokenizer, tmp_path):
    train = build_dataset("slake", "train", cfg, tokenizer, tmp_path)
    assert len(train) == 9  # 18 questions, half Chinese
    assert all(q.isascii() for q in train.texts) and "是" not in train.answers
    val = build_dataset("slake", "val", cfg, tokenizer, tmp_path)  # validate.json
    assert len(val) == 9 and val.answers == train.answers


def test_medvqa_2019_is_all_open(cfg, tokenizer, tmp_path):
    train = build_dataset("medvqa_2019", "train", cfg, tokenizer, tmp_path)
    assert len(train) == 9 and set(train.answer_types.tolist()) == {1}
    assert "ct w contrast iv" in train.answers and "axial" in train.answers
    assert len(train.images) == 3  # three questions (modality, organ, plane) per image


def test_medvqa_2019_malformed_line_names_file_and_line(tmp_path):
    cfg = _fresh(tmp_path, "medvqa_2019")
    path = tmp_path / "medvqa_2019/test/QA/Organ.csv"
    path.write_text(path.read_text() + "synpic2000|which organ?\n")
    with pytest.raises(DataFormatError, match=r"Organ.csv:4: expected image_id\|question\|answer"):
        build_dataset("medvqa_2019", "train", cfg, None, tmp_path)


def test_melinda(cfg, tokenizer, tmp_path):
    train = build_dataset("melinda", "train", cfg, tokenizer, tmp_path)
    val = build_dataset("melinda", "val", cfg, tokenizer, tmp_path)  # dev.csv
    assert train.kind == "cls" and len(train) == 6 and len(val) == 6
    assert train.classes == sorted(["microscopy", "medical_imaging", "gel", "plot"]) == val.classes
    assert train.texts[0] == "Figure 0: a microscopy image, with a comma."
    assert train.label_text(0) == "microscopy"
    batch = next(iter(make_loader(train, 6, train=False, cfg=cfg, seed=0)))
    assert batch.labels.tolist() == [train.classes.index(train.label_text(i)) for i in range(6)]


def test_melinda_missing_column_is_a_clear_error(tmp_path):
    cfg = _fresh(tmp_path, "melinda")
    path = tmp_path / "melinda/test.csv"
    path.write_text(path.read_text().replace("p_meth_label", "label", 1))
    with pytest.raises(DataFormatError, match=r"test.csv: missing column\(s\) \['p_meth_label'\]"):
        build_dataset("melinda", "train", cfg, None, tmp_path)


def test_images_are_resized_to_the_model_size(cfg, tmp_path):
    write_image(tmp_path / "odd.png", seed=0, size=(57, 13))
    from m3ae.data.dataset import FileImages

    image = FileImages([tmp_path / "odd.png"], 32)[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
