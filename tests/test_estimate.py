"""`ablate estimate`: counted FLOPs, shared pre-trainings, the image encoder's cost falling with the mask ratio."""

from __future__ import annotations

import textwrap

import torch

from ablations.cli import main
from ablations.estimate import estimate_study, pretrain_step_cost
from ablations.spec import parse_spec
from m3ae.config import apply_overrides, profile

STUDY = textwrap.dedent("""
    name: estimate_probe
    profile: smoke
    factors:
      model.mim.mask_ratio: [0.25, 0.75]
      finetune.lr: [0.001, 0.0005]
    seeds: [0, 1]
    tasks: [synth_vqa]
    metric: {name: synth_vqa/overall_acc, mode: max}
""")


def test_estimate_counts_trials_and_shared_pretrainings():
    torch.set_num_threads(1)
    est = estimate_study(parse_spec(STUDY, "probe.yaml"), progress=lambda _: None)
    assert est.trials == 8
    assert est.pretrainings == 4  # finetune.lr does not touch pre-training: 2 ratios x 2 seeds
    assert est.pretrain_flops > 0 and est.finetune_flops > 0
    assert est.seconds > 0


def test_image_encoder_flops_fall_with_mask_ratio():
    torch.set_num_threads(1)
    base = apply_overrides(profile("smoke"), ["model.mlm.enabled=false", "model.itm.enabled=false"])
    low = pretrain_step_cost(apply_overrides(base, ["model.mim.mask_ratio=0.25"])).flops
    high = pretrain_step_cost(apply_overrides(base, ["model.mim.mask_ratio=0.75"])).flops
    assert high < 0.75 * low  # MIM alone: the encoder sees a third as many patches


def test_estimate_command(tmp_path, capsys):
    study = tmp_path / "probe.yaml"
    study.write_text(STUDY)
    assert main(["estimate", str(study), "--workdir", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "trials:             8" in out and "pre-trainings:      4" in out and "GPU-hours" in out
    assert not (tmp_path / "w").exists()  # estimating creates nothing
