"""`ablate estimate`: counted FLOPs, shared pre-trainings, the image encoder's cost falling with the mask ratio."""

from __future__ import annotations

import textwrap

import pytest
import torch

from ablations.cli import main
from ablations.estimate import estimate_power, estimate_study, format_power, pretrain_step_cost, seeds_for_power
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


# --------------------------------------------------------------------------- power per comparison

ADAPTIVE = STUDY.replace("seeds: [0, 1]", "seeds: {start: 2, max: 6, min_effect: 1.0}").replace(
    "  finetune.lr: [0.001, 0.0005]\n", "")


def test_seeds_for_power_match_the_textbook_paired_t_test():
    assert seeds_for_power(2.0, 1.0) == 34  # effect size 0.5: 34 pairs (as G*Power)
    assert seeds_for_power(1.0, 1.0) == 10  # effect size 1: 10 pairs
    assert seeds_for_power(0.0, 1.0) == 2


def test_power_per_comparison_from_the_measured_paired_spread():
    spec = parse_spec(ADAPTIVE, "probe.yaml")
    # setting 0.25 leads; 0.75 trails by 2, 1 and 3 points on seeds 0-2: paired sd 1
    values = [{0: 50.0, 1: 51.0, 2: 52.0}, {0: 48.0, 1: 50.0, 2: 49.0}]
    est = estimate_power(spec, values, [600.0, 660.0], min_effect=1.0, slots=2)
    (row,) = est.comparisons
    assert row.against == {"model.mim.mask_ratio": 0.25} and row.setting == {"model.mim.mask_ratio": 0.75}
    assert row.pairs == 3 and row.spread == pytest.approx(1.0) and row.needed == 10
    assert row.more_trials == 14 and est.more_trials == 14  # 7 more seeds on each side
    assert est.seconds == pytest.approx(7 * 630.0)  # 14 trials, 2 side by side, 630 s each
    assert "seeds for 80% power" in format_power(spec, est)


def test_estimate_command_reads_results_from_mlflow(tmp_path, capsys):
    from ablations import tracking

    study = tmp_path / "probe.yaml"
    study.write_text(ADAPTIVE)
    workdir = tmp_path / "w"
    workdir.mkdir()
    tracker = tracking.Tracker(tracking.default_tracking_uri(workdir))
    experiment = tracker.experiment("estimate_probe")
    for ratio, results in ((0.25, [50.0, 51.0, 52.0]), (0.75, [48.0, 50.0, 49.0])):
        for seed, value in enumerate(results):
            run_id = tracker.start_run(experiment, "t", {tracking.KIND: "trial", tracking.TRIAL_ID: f"{ratio}-{seed}",
                                                          tracking.SEED: seed, "ablate.factor.model.mim.mask_ratio": ratio})
            tracker.log_metrics(run_id, {"synth_vqa/overall_acc": value})
            tracker.end_run(run_id)
    assert main(["estimate", str(study), "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "at most 12 trials" in out and "power to tell apart 1 on synth_vqa/overall_acc" in out
    assert "mim.mask_ratio=0.75  mim.mask_ratio=0.25  3      1.00       10" in out


def test_evaluation_is_part_of_the_estimate():
    from ablations.estimate import eval_examples, eval_passes

    cfg = apply_overrides(profile("smoke"), {"finetune.epochs": 10, "finetune.eval_every_epochs": 3})
    assert eval_passes(cfg) == 4  # epochs 3, 6, 9 and the last
    assert eval_passes(apply_overrides(cfg, {"finetune.evaluate_only": True})) == 1
    examples, images = eval_examples(cfg, "synth_vqa")
    assert examples == images * cfg.data.synth_questions_per_image
    irtr_examples, irtr_images = eval_examples(cfg, "synth_irtr")
    assert irtr_examples > irtr_images  # every image against every text
    assert eval_examples(cfg, "vqa_rad") is None  # real data: unknown until read
