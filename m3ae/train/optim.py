"""AdamW with parameter groups by rule, as nanoGPT's `configure_optimizers`.

Weight decay by tensor rank (matrices and embeddings decay; biases, norms and
scalars do not) and a learning-rate multiplier by the role of the module a
parameter belongs to ("encoders" x1, "fusion" x fusion_lr_mult, "heads" x
head_lr_mult), as the paper's code trains its fusion layers and heads faster.
Every trainable parameter must have a role: a new head can't silently train at
the wrong rate.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

ROLES = ("encoders", "fusion", "heads")


def lr_multipliers(cfg) -> dict[str, float]:
    """Role -> learning-rate multiplier from an OptimConfig."""
    return {"encoders": 1.0, "fusion": cfg.fusion_lr_mult, "heads": cfg.head_lr_mult}


def param_groups(roles: Mapping[str, Iterable[nn.Parameter]], cfg,
                 all_params: Iterable[nn.Parameter] | None = None) -> list[dict]:
    """AdamW groups: one per (role, decays) pair that has parameters.

    roles: role -> parameters (see M3AE.param_groups_by_role). all_params, when
    given, are checked to be covered: a trainable parameter with no role is an error.
    """
    mults = lr_multipliers(cfg)
    unknown = set(roles) - set(mults)
    if unknown:
        raise ValueError(f"unknown parameter roles {sorted(unknown)}: expected {list(ROLES)}")
    groups, seen = [], set()
    for role, params in roles.items():
        params = [p for p in params if p.requires_grad]
        for p in params:
            if id(p) in seen:
                raise ValueError(f"a parameter of shape {list(p.shape)} is listed under two roles")
            seen.add(id(p))
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        for chosen, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)):
            if chosen:
                groups.append({"params": chosen, "weight_decay": wd, "lr": cfg.lr * mults[role],
                               "role": role, "lr_mult": mults[role]})
    if all_params is not None:
        missing = [p for p in all_params if p.requires_grad and id(p) not in seen]
        if missing:
            shapes = [list(p.shape) for p in missing[:5]]
            raise ValueError(f"{len(missing)} trainable parameters have no role (shapes {shapes} ...): "
                             f"list them in param_groups_by_role()")
    return groups


def build_optimizer(roles: Mapping[str, Iterable[nn.Parameter]], cfg,
                    all_params: Iterable[nn.Parameter] | None = None) -> torch.optim.AdamW:
    """AdamW (betas and eps of the paper's code) over `param_groups`; the fused kernel where the
    device has one (a few times faster than the per-tensor loop on CPU)."""
    groups = param_groups(roles, cfg, all_params)
    fused = all(p.device.type in ("cpu", "cuda") for group in groups for p in group["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8, fused=fused)


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float) -> float:
    """Clip the global gradient norm over all groups (0 disables); returns the norm before clipping."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if max_norm <= 0:
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item() if params else 0.0
    return torch.nn.utils.clip_grad_norm_(params, max_norm).item()
