"""Co-attention fusion: the two streams attend to themselves and to each other.

Each layer, per modality (post-norm, as BERT's cross-attention layers the
paper's code uses):

    x = LN(x + SelfAttn(x))
    x = LN(x + CrossAttn(x, other))     # other = the other stream's input to this layer
    x = LN(x + FFN(x))

The stack returns every layer's states so objectives can read any depth:
states[0] is the projected encoder output (before fusion), states[k] the
output of layer k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from m3ae.config import FusionConfig
from m3ae.registry import FUSION

Streams = Literal["both", "image", "text"]


def key_padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """[B, Tk] (1 = real) -> bool [B, 1, 1, Tk] for scaled_dot_product_attention (True = attend)."""
    return None if attention_mask is None else attention_mask.bool()[:, None, None, :]


class Attention(nn.Module):
    """Multi-head attention of queries x over keys/values y, fused (SDPA)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, Tq, D], y [B, Tk, D], mask bool [B, 1, 1, Tk] or None -> [B, Tq, D]."""
        b, tq, d = x.shape
        h = self.num_heads
        q = self.q(x).view(b, tq, h, d // h).transpose(1, 2)  # [B, h, Tq, d/h]
        k, v = self.kv(y).view(b, y.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, tq, d))


class CoAttentionBlock(nn.Module):
    """One modality's half of a co-attention layer."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.self_attn = Attention(dim, num_heads, dropout)
        self.cross_attn = Attention(dim, num_heads, dropout)
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, x_mask, other, other_mask):
        x = self.norm1(x + self.drop(self.self_attn(x, x, x_mask)))
        x = self.norm2(x + self.drop(self.cross_attn(x, other, other_mask)))
        return self.norm3(x + self.drop(self.ffn(x)))


class CoAttentionLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.image = CoAttentionBlock(dim, num_heads, mlp_ratio, dropout)
        self.text = CoAttentionBlock(dim, num_heads, mlp_ratio, dropout)

    def forward(self, image, text, text_mask, streams: Streams = "both"):
        """image [B, Ni, D], text [B, T, D], text_mask bool [B, 1, 1, T] -> (image, text);
        a stream not asked for is not computed (None)."""
        new_image = self.image(image, None, text, text_mask) if streams != "text" else None
        new_text = self.text(text, text_mask, image, None) if streams != "image" else None
        return new_image, new_text


@dataclass
class FusionStates:
    """Per-layer states: image[k] [B, 1+K, D], text[k] [B, T, D]; k = 0 before fusion.
    The last entry of a stream the caller did not ask for is None."""

    image: list[torch.Tensor | None]
    text: list[torch.Tensor | None]


class CoAttentionFusion(nn.Module):
    """Projections to the fusion width, modality-type embeddings, N co-attention layers."""

    def __init__(self, cfg: FusionConfig, image_width: int, text_width: int):
        super().__init__()
        d = cfg.hidden_size
        self.image_proj = nn.Linear(image_width, d)
        self.text_proj = nn.Linear(text_width, d)
        self.type_embed = nn.Embedding(2, d)  # 0 = text, 1 = image
        norm = nn.LayerNorm if cfg.input_norm else (lambda _: nn.Identity())  # the official code: none
        self.image_norm, self.text_norm = norm(d), norm(d)
        self.layers = nn.ModuleList(
            CoAttentionLayer(d, cfg.num_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.num_layers))
        self.hidden_size = d

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def forward(self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, attention_mask: torch.Tensor,
                num_layers: int | None = None, streams: Streams = "both") -> FusionStates:
        """image_tokens [B, 1+K, Dv], text_tokens [B, T, Dt], attention_mask [B, T];
        runs the first `num_layers` layers (None = all) -> FusionStates with num_layers + 1
        entries. `streams` = "image" or "text" skips the other stream's last layer, which
        nothing reads (an objective that decodes one modality at layer k)."""
        image = self.image_norm(self.image_proj(image_tokens) + self.type_embed.weight[1])
        text = self.text_norm(self.text_proj(text_tokens) + self.type_embed.weight[0])
        states = FusionStates([image], [text])
        mask = key_padding_mask(attention_mask)
        layers = self.layers[:num_layers]
        for i, layer in enumerate(layers):
            image, text = layer(image, text, mask, streams if i == len(layers) - 1 else "both")
            states.image.append(image)
            states.text.append(text)
        return states


@FUSION.register("coattention")
def coattention(cfg: FusionConfig, image_width: int, text_width: int) -> CoAttentionFusion:
    return CoAttentionFusion(cfg, image_width, text_width)
