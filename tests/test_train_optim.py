"""Optimizer groups by rule and the learning-rate schedule (no model or data needed)."""

import pytest
import torch
from torch import nn

from m3ae.config import OptimConfig
from m3ae.train.optim import build_optimizer, param_groups
from m3ae.train.schedule import build_scheduler, lr_factor


def _roles():
    enc, fusion, head = nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)
    return {"encoders": list(enc.parameters()), "fusion": list(fusion.parameters()),
            "heads": list(head.parameters())}, [enc, fusion, head]


def test_groups_decay_by_rank_and_scale_lr_by_role():
    roles, _ = _roles()
    cfg = OptimConfig(lr=1e-3, weight_decay=0.05, fusion_lr_mult=5.0, head_lr_mult=10.0)
    groups = {(g["role"], g["weight_decay"]): g for g in param_groups(roles, cfg)}
    # matrices decay, biases and norm weights (rank < 2) don't
    assert [p.shape for p in groups[("encoders", 0.05)]["params"]] == [torch.Size([4, 4])]
    assert [p.shape for p in groups[("encoders", 0.0)]["params"]] == [torch.Size([4])]
    assert ("fusion", 0.05) not in groups  # a LayerNorm has no matrix
    assert len(groups[("fusion", 0.0)]["params"]) == 2
    assert groups[("encoders", 0.05)]["lr"] == pytest.approx(1e-3)
    assert groups[("fusion", 0.0)]["lr"] == pytest.approx(5e-3)
    assert groups[("heads", 0.05)]["lr"] == pytest.approx(1e-2)


def test_a_parameter_without_role_or_with_two_roles_is_an_error():
    roles, modules = _roles()
    stray = nn.Linear(3, 3)
    everything = [p for m in modules + [stray] for p in m.parameters()]
    with pytest.raises(ValueError, match="2 trainable parameters have no role"):
        param_groups(roles, OptimConfig(), everything)
    roles["heads"] = roles["heads"] + roles["encoders"][:1]
    with pytest.raises(ValueError, match="listed under two roles"):
        param_groups(roles, OptimConfig())
    with pytest.raises(ValueError, match="unknown parameter roles"):
        param_groups({"decoder": []}, OptimConfig())


def test_lr_factor_warmup_then_linear_or_cosine_decay():
    # 10 steps, 2 of warm-up: 0.5, 1.0, then decay over the remaining 8 steps
    assert [lr_factor(s, 10, 2, "linear") for s in (0, 1, 2, 6, 10)] == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.0])
    assert [lr_factor(s, 10, 2, "cosine") for s in (2, 6, 10)] == pytest.approx([1.0, 0.5, 0.0])
    assert lr_factor(9, 10, 0, "constant") == 1.0
    assert lr_factor(0, 10, 0, "linear") == 1.0  # no warm-up: full lr on the first step
    with pytest.raises(ValueError, match="unknown lr schedule"):
        lr_factor(5, 10, 0, "step")


def test_scheduler_keeps_role_ratios_at_every_step():
    roles, _ = _roles()
    cfg = OptimConfig(lr=1e-2, warmup_frac=0.2, schedule="linear", fusion_lr_mult=5.0, head_lr_mult=10.0)
    opt = build_optimizer(roles, cfg)
    sched = build_scheduler(opt, cfg, total_steps=10)
    seen = []
    for _ in range(10):
        lrs = {g["role"]: g["lr"] for g in opt.param_groups}
        assert lrs["fusion"] == pytest.approx(5 * lrs["encoders"]) and lrs["heads"] == pytest.approx(10 * lrs["encoders"])
        seen.append(lrs["encoders"])
        opt.step()
        sched.step()
    assert seen[:3] == pytest.approx([5e-3, 1e-2, 1e-2])
    assert seen[-1] == pytest.approx(1e-2 / 8)
