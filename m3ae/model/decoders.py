"""Reconstruction decoders: vision (pixels of masked patches) and language (masked tokens).

Vision decoders take the fused image states of the visible patches
[B, 1+K, D] (with [CLS]) and `ids_restore` [B, N], and predict every patch's
pixels [B, N, p*p*3]; the loss keeps only the masked ones.

Language decoders take fused text states [B, T, D] and predict vocabulary
logits only where `select` [B, T] is True (the masked tokens): [M, V], so the
large vocabulary projection runs on 15% of the tokens.
"""

from __future__ import annotations

import torch
from timm.layers import Mlp
from timm.models.vision_transformer import Block
from torch import nn

from m3ae.config import MIMConfig, MLMConfig
from m3ae.model.fusion import key_padding_mask
from m3ae.model.pos_embed import sincos_2d
from m3ae.registry import LANGUAGE_DECODERS, VISION_DECODERS


# --------------------------------------------------------------------------- vision


class _MaskTokenDecoder(nn.Module):
    """Shared front: embed visible tokens, fill masked places with a mask token, unshuffle,
    add fixed 2D sin-cos positions. -> [B, 1+N, width]."""

    def __init__(self, in_dim: int, width: int, grid: tuple[int, int]):
        super().__init__()
        self.embed = nn.Linear(in_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("pos_embed", sincos_2d(width, grid, cls_token=True), persistent=False)
        nn.init.normal_(self.mask_token, std=0.02)

    def tokens(self, states: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.embed(states)  # [B, 1+K, W]
        b, n = ids_restore.shape
        masks = self.mask_token.expand(b, n + 1 - x.shape[1], -1)
        patches = torch.cat([x[:, 1:], masks], dim=1)  # visible first, then masked
        patches = patches.gather(1, ids_restore[:, :, None].expand(-1, -1, x.shape[-1]))
        return torch.cat([x[:, :1], patches], dim=1) + self.pos_embed


class TransformerVisionDecoder(_MaskTokenDecoder):
    """MAE's decoder: mask tokens + positions through `depth` Transformer blocks."""

    def __init__(self, in_dim: int, width: int, depth: int, num_heads: int, grid, patch_dim: int):
        super().__init__(in_dim, width, grid)
        self.blocks = nn.Sequential(*[Block(width, num_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.pred = nn.Linear(width, patch_dim)

    def forward(self, states: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.blocks(self.tokens(states, ids_restore)))
        return self.pred(x[:, 1:])  # [B, N, p*p*3]


class MLPVisionDecoder(_MaskTokenDecoder):
    """A per-patch MLP, no attention between patches. A masked patch sees only its
    position and the image's [CLS] state (added to every token), so whatever it
    reconstructs must already be summarised in the fused features."""

    def __init__(self, in_dim: int, width: int, depth: int, grid, patch_dim: int):
        super().__init__(in_dim, width, grid)
        self.mlps = nn.Sequential(*[_Residual(nn.Sequential(nn.LayerNorm(width), Mlp(width, 4 * width)))
                                    for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.pred = nn.Linear(width, patch_dim)

    def forward(self, states: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.tokens(states, ids_restore)
        x = x[:, 1:] + x[:, :1]  # broadcast the [CLS] summary to every patch
        return self.pred(self.norm(self.mlps(x)))


class _Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return x + self.fn(x)


@VISION_DECODERS.register("transformer")
def transformer_vision_decoder(cfg: MIMConfig, in_dim: int, grid: tuple[int, int], patch_dim: int):
    return TransformerVisionDecoder(in_dim, cfg.decoder_width, cfg.decoder_depth, cfg.decoder_heads, grid, patch_dim)


@VISION_DECODERS.register("mlp")
def mlp_vision_decoder(cfg: MIMConfig, in_dim: int, grid: tuple[int, int], patch_dim: int):
    return MLPVisionDecoder(in_dim, cfg.decoder_width, cfg.decoder_depth, grid, patch_dim)


# --------------------------------------------------------------------------- language


class PredictionHead(nn.Module):
    """BERT's MLM head: dense + GELU + LayerNorm, then the vocabulary projection."""

    def __init__(self, dim: int, vocab_size: int):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.decoder = nn.Linear(dim, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class MLPLanguageDecoder(nn.Module):
    """The paper's language decoder: the prediction head on each masked token."""

    def __init__(self, dim: int, vocab_size: int):
        super().__init__()
        self.head = PredictionHead(dim, vocab_size)

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
        return self.head(states[select])  # [M, V]


class TransformerLanguageDecoder(nn.Module):
    """`depth` Transformer blocks over the whole text, then the prediction head."""

    def __init__(self, dim: int, vocab_size: int, depth: int, num_heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth))
        self.head = PredictionHead(dim, vocab_size)

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
        # additive float mask: timm's blocks add it to the scores when fused attention is off
        mask = torch.zeros_like(key_padding_mask(attention_mask), dtype=states.dtype)
        mask = mask.masked_fill(~key_padding_mask(attention_mask), float("-inf"))
        x = states
        for block in self.blocks:
            x = block(x, attn_mask=mask)
        return self.head(x[select])  # [M, V]


@LANGUAGE_DECODERS.register("mlp")
def mlp_language_decoder(cfg: MLMConfig, dim: int, vocab_size: int, num_heads: int):
    return MLPLanguageDecoder(dim, vocab_size)


@LANGUAGE_DECODERS.register("transformer")
def transformer_language_decoder(cfg: MLMConfig, dim: int, vocab_size: int, num_heads: int):
    return TransformerLanguageDecoder(dim, vocab_size, cfg.decoder_depth, num_heads)
