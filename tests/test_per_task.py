"""Per-task fine-tuning settings (finetune.per_task): the paper profile's official
settings, dotted overrides, params, the dry run, and a fine-tuning that uses them."""

from __future__ import annotations

import pytest

from ablations.cli import main
from m3ae.config import (ConfigError, PerTaskConfig, apply_overrides, flatten, from_yaml, profile, task_config,
                         to_yaml)
from m3ae.keys import pretrain_view, trial_id
from m3ae.train import Callback, finetune, pretrain

# the official code's settings (m3ae/config.py task_finetune_*, run_scripts/finetune_m3ae.sh)
OFFICIAL = {  # task: (batch, epochs, head lr x, images, text tokens)
    "vqa_rad": (64, 50, 50, 384, 32), "slake": (32, 15, 50, 384, 32), "medvqa_2019": (32, 10, 50, 384, 32),
    "melinda": (16, 20, 10, 384, 128), "roco": (256, 10, 5, 288, 64),
}


@pytest.mark.parametrize("task", sorted(OFFICIAL))
def test_paper_profile_fine_tunes_each_task_with_the_official_settings(task):
    cfg = task_config(profile("paper"), task)
    f = cfg.finetune
    assert (f.batch_size, f.epochs, f.head_lr_mult, cfg.model.vision.image_size,
            cfg.model.text.max_length) == OFFICIAL[task]
    assert (f.lr, f.fusion_lr_mult) == (5e-6, 5.0)
    assert profile("paper").model.vision.image_size == 288  # pre-training keeps its own size


@pytest.mark.parametrize("name", ["smoke", "laptop"])
def test_other_profiles_and_their_keys_are_unchanged(name):
    cfg = profile(name)
    assert cfg.finetune.per_task == PerTaskConfig()
    for task in PerTaskConfig.__dataclass_fields__:
        assert task_config(cfg, task) == cfg
    # fields at their defaults are left out of the keys: earlier trials keep their ids
    assert "micro_batch_size" not in pretrain_view(cfg)["pretrain"]
    assert trial_id(cfg) != trial_id(apply_overrides(cfg, ["finetune.per_task.synth_vqa.epochs=3"]))


def test_per_task_settings_are_dotted_paths_params_and_yaml():
    cfg = apply_overrides(profile("paper"), ["finetune.per_task.slake.epochs=3", "finetune.per_task.slake.lr=1e-5"])
    flat = flatten(cfg)
    assert flat["finetune.per_task.slake.epochs"] == 3 and flat["finetune.per_task.vqa_rad.head_lr_mult"] == 50.0
    assert from_yaml(to_yaml(cfg)) == cfg
    assert task_config(cfg, "slake").finetune.lr == 1e-5
    with pytest.raises(ConfigError, match="finetune.per_task.slake.epochs"):
        apply_overrides(cfg, ["finetune.per_task.slake.epochs=0"])
    with pytest.raises(ConfigError, match="did you mean"):
        apply_overrides(cfg, ["finetune.per_task.slake.epoch=3"])


def test_dry_run_shows_each_tasks_settings(capsys, tmp_path):
    from pathlib import Path

    from fixtures.real_datasets import write_all

    study = Path(__file__).resolve().parents[1] / "studies" / "mask_ratio.yaml"
    root = write_all(tmp_path / "data")  # the paper profile reads ROCO + MedICaT and VQA-RAD: a dry run checks they exist
    assert main(["run", str(study), "--profile", "paper", "--dry-run", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "vqa_rad: batch 64, 50 epochs, lr 5e-06 (fusion x5, heads x50), images 384 px, text 32 tokens" in out


class Steps(Callback):
    def __init__(self):
        self.steps = 0

    def on_step(self, stage, step, metrics):
        self.steps += 1


def test_fine_tuning_runs_with_the_tasks_settings_and_interpolated_positions(tmp_path):
    """Pre-trained at 32 px, fine-tuned at 48 px (positions resampled), with the task's own batch and epochs."""
    cfg = apply_overrides(profile("smoke"), {"threads": 1, "pretrain.steps": 2, "data.synth_cls_pairs": 96})
    pre = pretrain(cfg, tmp_path / "pre", tmp_path / "cache")
    tuned = apply_overrides(cfg, {"finetune.per_task.synth_cls.image_size": 48, "finetune.per_task.synth_cls.epochs": 2,
                                  "finetune.per_task.synth_cls.batch_size": 8,
                                  "finetune.per_task.synth_cls.micro_batch_size": 4})
    steps = Steps()
    result = finetune(tuned, "synth_cls", pre.checkpoint, tmp_path / "cls", tmp_path / "cache", [steps])
    train_examples = 96 * 6 // 10  # synth_cls's train split of 96 pairs (60%)
    assert steps.steps == 2 * (train_examples // 8)
    assert set(result.metrics) == {"acc", "macro_f1"}
