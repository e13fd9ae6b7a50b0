"""Fixed 2D sine-cosine position embeddings (as MAE's decoder uses).

Half of the channels encode the row, half the column; each half is the 1D
transformer embedding sin(pos * w_k), cos(pos * w_k) with w_k = 10000^(-k/(D/4)).
"""

from __future__ import annotations

import torch


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """positions: [M] -> [M, dim] (dim even)."""
    assert dim % 2 == 0, f"sin-cos embedding needs an even width, got {dim}"
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # [dim/2]
    angles = positions.to(torch.float64)[:, None] * omega[None, :]  # [M, dim/2]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid: tuple[int, int], cls_token: bool = True) -> torch.Tensor:
    """[1, (1 +) H*W, dim] float32: row-major patch order, an all-zero row first for [CLS]."""
    assert dim % 4 == 0, f"2D sin-cos embedding needs a width divisible by 4, got {dim}"
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    emb = torch.cat([sincos_1d(dim // 2, rows.flatten()), sincos_1d(dim // 2, cols.flatten())], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)
    return emb.float().unsqueeze(0)
