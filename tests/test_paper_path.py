"""The paper-scale path on real-format data: the `paper` profile (ROCO + MedICaT pre-training,
VQA-RAD fine-tuning, RoBERTa text encoder, recon layer 3 of 6) run end to end on tiny fixtures
in the datasets' published layouts, with only the sizes shrunk: the same code path a GPU user runs."""

from __future__ import annotations

import json

from ablations.cli import main
from fixtures.real_datasets import write_medicat, write_roco, write_vqa_rad

TINY = [
    "model.vision.image_size=32", "model.vision.width=32", "model.vision.depth=1", "model.vision.num_heads=2",
    "model.text.hidden_size=32", "model.text.num_layers=1", "model.text.num_heads=2",
    "model.text.intermediate_size=64", "model.text.max_length=24",
    "model.fusion.hidden_size=32", "model.fusion.num_heads=2",
    "model.mim.decoder_width=32", "model.mim.decoder_heads=2", "model.mim.decoder_depth=1",
    "data.vocab_size=400", "pretrain.steps=2", "pretrain.batch_size=4", "pretrain.eval_every=0",
    "pretrain.precision=fp32", "finetune.epochs=1", "finetune.batch_size=4", "finetune.precision=fp32",
    # VQA-RAD's own paper settings (batch 64, 50 epochs, 384 px, 32 tokens) shrunk too
    "finetune.per_task.vqa_rad.batch_size=4", "finetune.per_task.vqa_rad.epochs=1",
    "finetune.per_task.vqa_rad.image_size=null", "finetune.per_task.vqa_rad.max_length=null",
]


def test_paper_profile_trains_on_real_format_fixtures(tmp_path, capsys):
    root = tmp_path / "data"
    write_roco(root), write_medicat(root), write_vqa_rad(root)
    workdir = tmp_path / "runs"
    args = ["train", "--profile", "paper", "--workdir", str(workdir), "--run-name", "paper-path",
            "--set", f"data.root={root}"]
    for override in TINY:
        args += ["--set", override]
    assert main(args) == 0, capsys.readouterr().err
    run = workdir / "train" / "paper-path"
    config = (run / "config.yaml").read_text()
    assert "pretrain: roco+medicat" in config and "kind: roberta" in config and "recon_layer: 3" in config
    summary = json.loads((run / "metrics.json").read_text())
    assert set(summary["tasks"]) == {"vqa_rad"}
    assert set(summary["tasks"]["vqa_rad"]["test"]) == {"overall_acc", "open_acc", "closed_acc"}
