"""`ablate data check`: per dataset and split, examples and images against the published
counts, missing files, and a manifest of ids with a hash, on tiny data roots."""

from __future__ import annotations

import json

from ablations.cli import main
from fixtures.real_datasets import write_all, write_vqa_rad
from m3ae.data.real.check import PUBLISHED, check_root, ids_hash


def test_a_complete_root_reports_every_split_and_writes_the_manifest(tmp_path, capsys):
    root = write_all(tmp_path / "data")
    out = tmp_path / "manifest.json"
    assert main(["data", "check", "--data-root", str(root), "--out", str(out), "--workdir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "vqa_rad" in printed and "12,792" in printed  # VQA-Med-2019's published train size
    manifest = json.loads(out.read_text())
    splits = {(s["dataset"], s["split"]): s for s in manifest["splits"]}
    assert set(splits) == {(d, s) for d, counts in PUBLISHED.items() for s in counts}
    for split in splits.values():
        assert split["examples"] > 0 and split["missing_count"] == 0 and not split["error"]
        assert split["ids_hash"] == ids_hash(split["ids"])
    assert splits[("vqa_rad", "train")]["published_examples"] == 3064


def test_the_hash_tells_splits_apart_and_missing_images_are_counted(tmp_path, capsys):
    root = tmp_path / "data"
    write_vqa_rad(root)
    before = {(c.dataset, c.split): c for c in check_root(root)}
    image = sorted((root / "vqa_rad" / "images").iterdir())[0]
    image.unlink()
    train = json.loads((root / "vqa_rad" / "trainset.json").read_text())
    (root / "vqa_rad" / "trainset.json").write_text(json.dumps(train[1:]))
    after = {(c.dataset, c.split): c for c in check_root(root)}
    assert after["vqa_rad", "train"].ids_hash != before["vqa_rad", "train"].ids_hash
    assert after["vqa_rad", "test"].ids_hash == before["vqa_rad", "test"].ids_hash
    assert after["vqa_rad", "train"].missing_count == 1 and str(image) in after["vqa_rad", "train"].missing
    assert after["slake", "train"].error.startswith("no folder")
    code = main(["data", "check", "--data-root", str(root), "--workdir", str(tmp_path)])
    assert code == 1  # a dataset that is present is incomplete
    assert str(image) in capsys.readouterr().out


def test_a_malformed_file_is_reported_and_a_bad_root_is_bad_input(tmp_path, capsys):
    root = tmp_path / "data"
    write_vqa_rad(root)
    (root / "vqa_rad" / "testset.json").write_text("{not json")
    checks = {(c.dataset, c.split): c for c in check_root(root)}
    assert "JSONDecodeError" in checks["vqa_rad", "test"].error
    assert main(["data", "check", "--data-root", str(tmp_path / "nowhere"), "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--data-root" in err and "Traceback" not in err
