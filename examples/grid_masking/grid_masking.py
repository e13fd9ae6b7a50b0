"""An example plugin: `grid` image masking, registered with the decorator the built-ins use.

MAE's random masking can leave clusters of visible patches, so a masked patch is
often restored by copying its neighbour. Grid masking keeps the visible patches
on a regular lattice (a random offset per image), so every masked patch is about
equally far from what the encoder sees. The masked count is exactly random
masking's (`num_kept`), as the model expects.

    plugins: [grid_masking]               # in a study file next to this one
    ablate train --plugin grid_masking --set model.mim.masking=grid
"""

from __future__ import annotations

import math

import torch

from m3ae.model.masking import num_kept
from m3ae.registry import IMAGE_MASKING


@IMAGE_MASKING.register("grid")
def grid_image_mask(batch_size: int, grid: tuple[int, int], ratio: float,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Visible patches every `stride` rows and columns from a random offset; then random patches
    are added or hidden until exactly `num_kept` stay visible. -> bool [B, N], True = masked."""
    h, w = grid
    n, kept = h * w, num_kept(h * w, ratio)
    stride = max(1, round(math.sqrt(n / kept)))
    rows, cols = torch.arange(h).view(h, 1), torch.arange(w).view(1, w)
    masks = []
    for _ in range(batch_size):
        dy, dx = torch.randint(0, stride, (2,)).tolist()
        on_lattice = (((rows - dy) % stride == 0) & ((cols - dx) % stride == 0)).flatten()
        # lattice patches first, in random order, then the rest: the first `kept` stay visible
        order = torch.randperm(n)
        order = torch.cat([order[on_lattice[order]], order[~on_lattice[order]]])
        mask = torch.ones(n, dtype=torch.bool)
        mask[order[:kept]] = False
        masks.append(mask)
    return torch.stack(masks).to(device)
