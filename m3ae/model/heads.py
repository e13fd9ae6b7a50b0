"""Heads on the pooled output [B, 2D] (text [CLS] pooler ++ image [CLS] pooler)."""

from __future__ import annotations

import torch
from torch import nn


class Pooler(nn.Module):
    """BERT's pooler: tanh(dense(first token)). [B, T, D] -> [B, D]."""

    def __init__(self, dim: int):
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(tokens[:, 0]))


class ITMHead(nn.Module):
    """Matched / mismatched logits [B, 2]; also the retrieval score (logit of class 1)."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, 2)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(pooled)


class _MLPClassifier(nn.Module):
    """dense -> LayerNorm -> GELU -> dense, the paper's VQA classifier (1536 -> 1536 -> answers)."""

    OUTPUT = "net.3"  # the last dense layer: one row per class

    def __init__(self, in_dim: int, num_outputs: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.GELU(),
                                 nn.Linear(hidden, num_outputs))
        self.apply(init_weights)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


class VQAHead(_MLPClassifier):
    """Answer logits [B, A] over the answer set (trained with BCE on soft scores)."""

    def __init__(self, in_dim: int, num_answers: int, hidden: int | None = None):
        super().__init__(in_dim, num_answers, hidden)


class ClassificationHead(_MLPClassifier):
    """Class logits [B, C]."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int | None = None):
        super().__init__(in_dim, num_classes, hidden)


def init_weights(module: nn.Module) -> None:
    """MAE's init for the layers we own (the encoders keep their libraries' init):
    xavier-uniform linears scale with the width, where BERT's fixed std 0.02 leaves
    small models' cross-attention too weak to start learning."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
