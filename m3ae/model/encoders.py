"""Unimodal encoders: thin adapters around timm (images) and transformers (texts).

Both return token sequences; neither downloads anything. A new encoder is one
factory registered in VISION_ENCODERS / TEXT_ENCODERS with the same signature.
"""

from __future__ import annotations

import functools
from pathlib import Path

import timm
import torch
from torch import nn
from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

from m3ae.batch import TextVocab
from m3ae.config import TextConfig, VisionConfig
from m3ae.model.pos_embed import sincos_2d
from m3ae.registry import TEXT_ENCODERS, VISION_ENCODERS


# --------------------------------------------------------------------------- images


class TimmViTEncoder(nn.Module):
    """A timm VisionTransformer that encodes only the visible patches (MAE style).

    Patch embedding and positions are added for all N patches, then only the
    kept ones go through the blocks, so the encoder's cost falls with the mask
    ratio. Output: [B, 1 + K, D], the [CLS] token first.
    """

    def __init__(self, vit: nn.Module, patch_size: int):
        super().__init__()
        if getattr(vit, "cls_token", None) is None or vit.pos_embed is None:
            name = (getattr(vit, "pretrained_cfg", None) or {}).get("architecture", type(vit).__name__)
            raise ValueError(f"model.vision.name: {name} has no [CLS] token or no learned positions; "
                             "M3AE pools the [CLS] token (use e.g. vit_base_patch16_224)")
        self.vit = vit
        self.patch_size = patch_size
        self.grid_size: tuple[int, int] = tuple(vit.patch_embed.grid_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.width: int = vit.embed_dim

    def forward(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """images [B, 3, H, W]; keep [B, K] visible patch indices (None = all) -> [B, 1 + K, D]."""
        vit = self.vit
        x = vit.patch_embed(images)  # [B, N, D]
        prefix = [vit.cls_token]
        if vit.reg_token is not None:
            prefix.append(vit.reg_token)
        prefix = torch.cat(prefix, dim=1)  # [1, P, D]
        if vit.no_embed_class:
            x = x + vit.pos_embed
        else:
            x = x + vit.pos_embed[:, vit.num_prefix_tokens:]
            prefix = prefix + vit.pos_embed[:, :vit.num_prefix_tokens]
        if keep is not None:
            x = x.gather(1, keep[:, :, None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([prefix.expand(x.shape[0], -1, -1), x], dim=1)
        x = vit.norm_pre(vit.pos_drop(x))
        x = vit.norm(vit.blocks(x))
        if vit.num_reg_tokens:  # drop register tokens: downstream expects [CLS] + patches
            x = torch.cat([x[:, :1], x[:, vit.num_prefix_tokens:]], dim=1)
        return x


@functools.lru_cache(maxsize=1)
def timm_vit_names() -> tuple[str, ...]:
    """The timm models `model.vision.name` may name (the plain VisionTransformer family)."""
    return tuple(timm.list_models(module="vision_transformer"))


@VISION_ENCODERS.register("timm")
def timm_vit(cfg: VisionConfig) -> TimmViTEncoder:
    """Any timm ViT by name, resized to the configured image / patch size; random
    init, or the weights of a local file (.safetensors or a torch state dict)."""
    overrides = {"embed_dim": cfg.width, "depth": cfg.depth, "num_heads": cfg.num_heads}
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    if cfg.weights is not None:
        path = Path(cfg.weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model.vision.weights: no such file {path}")
        # timm's own loader: maps the checkpoint to this model, resamples
        # positions to the configured grid, drops the classifier; never downloads.
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    vit = timm.create_model(cfg.name, img_size=cfg.image_size, patch_size=cfg.patch_size,
                            num_classes=0, global_pool="", drop_path_rate=cfg.drop_path, **kwargs)
    encoder = TimmViTEncoder(vit, cfg.patch_size)  # refuses a ViT without a learned position table
    if cfg.pos_embed == "sincos":
        fix_sincos_positions(vit)
    return encoder


def fix_sincos_positions(vit: nn.Module) -> None:
    """MAE's fixed 2-D sin-cos positions in place of the learned ones (prefix
    tokens get zeros), frozen. A randomly initialised learned table starts near
    zero (std 0.02) and tells the patches apart only once trained; sin-cos says
    where each patch is from the first step. Replaces loaded positions too."""
    if vit.embed_dim % 4:
        raise ValueError(f"model.vision.pos_embed: sincos needs a width divisible by 4, got {vit.embed_dim}")
    table = sincos_2d(vit.embed_dim, tuple(vit.patch_embed.grid_size), cls_token=False)  # [1, N, D] row-major
    with torch.no_grad():
        vit.pos_embed.zero_()
        vit.pos_embed[:, vit.pos_embed.shape[1] - table.shape[1]:] = table
    vit.pos_embed.requires_grad_(False)


timm_vit.model_names = timm_vit_names  # config validates model.vision.name against this


# --------------------------------------------------------------------------- texts


class HFTextEncoder(nn.Module):
    """A transformers BERT / RoBERTa without its pooler. Output: [B, T, D]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.width: int = model.config.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _hf_text_encoder(model_cls, config_cls, cfg: TextConfig, vocab: TextVocab, **arch) -> HFTextEncoder:
    if cfg.pretrained is not None:
        path = Path(cfg.pretrained).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model.text.pretrained: {path} is not a transformers model "
                                    "directory (expected config.json and weights)")
        model = model_cls.from_pretrained(path, add_pooling_layer=False, attn_implementation="sdpa",
                                          local_files_only=True)
        if model.config.vocab_size < vocab.size:
            raise ValueError(f"model.text.pretrained: {path} has {model.config.vocab_size} token "
                             f"embeddings but the tokenizer has {vocab.size} tokens")
        return HFTextEncoder(model)
    config = config_cls(
        vocab_size=vocab.size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
        pad_token_id=vocab.pad_id, attn_implementation="sdpa", **arch)
    return HFTextEncoder(model_cls(config, add_pooling_layer=False))


@TEXT_ENCODERS.register("bert")
def bert(cfg: TextConfig, vocab: TextVocab) -> HFTextEncoder:
    return _hf_text_encoder(BertModel, BertConfig, cfg, vocab,
                            max_position_embeddings=max(512, cfg.max_length), type_vocab_size=2)


@TEXT_ENCODERS.register("roberta")
def roberta(cfg: TextConfig, vocab: TextVocab) -> HFTextEncoder:
    # RoBERTa numbers positions from pad_id + 1, hence the extra rows (514 for RoBERTa-base).
    return _hf_text_encoder(RobertaModel, RobertaConfig, cfg, vocab,
                            max_position_embeddings=max(512, cfg.max_length) + vocab.pad_id + 1,
                            type_vocab_size=1)
