"""The official M3AE checkpoints (zhjohnchan/M3AE, PyTorch Lightning `.ckpt`) in this project's format.

    conversion = convert_state(ckpt["state_dict"])   # explicit key map; unmapped keys are an error
    official_sizes(conversion.weights)                # config overrides read off the tensors' shapes
    conversion.head                                   # a fine-tuned checkpoint's vqa_head / cls_head

The official model (m3ae/modules/m3ae_module.py) and ours are the same network
with other names: OpenAI CLIP's VisualTransformer = timm's CLIP ViT; RoBERTa
= RoBERTa; BertCrossLayer (self-attention, cross-attention, FFN, each
post-norm) = CoAttentionBlock, whose key and value projections are fused (kv =
[key; value]); the poolers, ITM head and MLM head correspond one to one; the
MIM decoder's OpenAI-style blocks = timm Blocks. What differs is listed in
docs/paper_scale.md (QuickGELU in the MIM decoder, LayerNorm eps).

Keys that are deliberately not imported are listed in IGNORED with the reason;
anything neither mapped nor ignored stops the conversion. A fine-tuned
classifier head is returned apart from the model's weights: its rows follow
the official code's class order, which `ablate import-m3ae --task` stores
with it (m3ae/data/real/classes.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

# official prefix pattern -> our name; (?P<i>...) layer indices carry over
VISION = "vision_encoder.vit."
RENAMES: list[tuple[str, str]] = [
    # CLIP ViT (m3ae/modules/vision_encoders/clip_model.py VisualTransformer)
    (r"vision_encoder\.visual\.conv1\.weight", VISION + "patch_embed.proj.weight"),
    (r"vision_encoder\.visual\.ln_pre\.(weight|bias)", VISION + r"norm_pre.\1"),
    (r"vision_encoder\.visual\.ln_post\.(weight|bias)", VISION + r"norm.\1"),
    (r"vision_encoder\.visual\.transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)", VISION + r"blocks.\1.attn.qkv.\2"),
    (r"vision_encoder\.visual\.transformer\.resblocks\.(\d+)\.attn\.out_proj\.(weight|bias)", VISION + r"blocks.\1.attn.proj.\2"),
    (r"vision_encoder\.visual\.transformer\.resblocks\.(\d+)\.ln_1\.(weight|bias)", VISION + r"blocks.\1.norm1.\2"),
    (r"vision_encoder\.visual\.transformer\.resblocks\.(\d+)\.ln_2\.(weight|bias)", VISION + r"blocks.\1.norm2.\2"),
    (r"vision_encoder\.visual\.transformer\.resblocks\.(\d+)\.mlp\.c_fc\.(weight|bias)", VISION + r"blocks.\1.mlp.fc1.\2"),
    (r"vision_encoder\.visual\.transformer\.resblocks\.(\d+)\.mlp\.c_proj\.(weight|bias)", VISION + r"blocks.\1.mlp.fc2.\2"),
    # RoBERTa (transformers' RobertaModel, the same names below `language_encoder.`)
    (r"language_encoder\.(embeddings\..*|encoder\..*)", r"text_encoder.model.\1"),
    # projections, modality types (0 = text, 1 = image in both), poolers, ITM head
    (r"multi_modal_vision_proj\.(weight|bias)", r"fusion.image_proj.\1"),
    (r"multi_modal_language_proj\.(weight|bias)", r"fusion.text_proj.\1"),
    (r"modality_type_embeddings\.weight", "fusion.type_embed.weight"),
    (r"multi_modal_vision_pooler\.dense\.(weight|bias)", r"image_pooler.dense.\1"),
    (r"multi_modal_language_pooler\.dense\.(weight|bias)", r"text_pooler.dense.\1"),
    (r"itm_head\.fc\.(weight|bias)", r"itm_head.fc.\1"),
    # MLM head (BertPredictionHeadTransform: dense, GELU, LayerNorm; decoder without bias + a bias)
    (r"mlm_head\.transform\.dense\.(weight|bias)", r"objectives.mlm.decoder.head.transform.0.\1"),
    (r"mlm_head\.transform\.LayerNorm\.(weight|bias)", r"objectives.mlm.decoder.head.transform.2.\1"),
    (r"mlm_head\.decoder\.weight", "objectives.mlm.decoder.head.decoder.weight"),
    (r"mlm_head\.bias", "objectives.mlm.decoder.head.decoder.bias"),
    # MIM head (prediction_heads.MIMHead: OpenAI-style Transformer blocks)
    (r"mim_head\.decoder_embed\.(weight|bias)", r"objectives.mim.decoder.embed.\1"),
    (r"mim_head\.mask_token", "objectives.mim.decoder.mask_token"),
    (r"mim_head\.decoder\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)", r"objectives.mim.decoder.blocks.\1.attn.qkv.\2"),
    (r"mim_head\.decoder\.resblocks\.(\d+)\.attn\.out_proj\.(weight|bias)", r"objectives.mim.decoder.blocks.\1.attn.proj.\2"),
    (r"mim_head\.decoder\.resblocks\.(\d+)\.ln_1\.(weight|bias)", r"objectives.mim.decoder.blocks.\1.norm1.\2"),
    (r"mim_head\.decoder\.resblocks\.(\d+)\.ln_2\.(weight|bias)", r"objectives.mim.decoder.blocks.\1.norm2.\2"),
    (r"mim_head\.decoder\.resblocks\.(\d+)\.mlp\.c_fc\.(weight|bias)", r"objectives.mim.decoder.blocks.\1.mlp.fc1.\2"),
    (r"mim_head\.decoder\.resblocks\.(\d+)\.mlp\.c_proj\.(weight|bias)", r"objectives.mim.decoder.blocks.\1.mlp.fc2.\2"),
    (r"mim_head\.decoder_norm\.(weight|bias)", r"objectives.mim.decoder.norm.\1"),
    (r"mim_head\.decoder_pred\.(weight|bias)", r"objectives.mim.decoder.pred.\1"),
]

# BertCrossLayer (m3ae/modules/language_encoders/bert_model.py) -> one modality's CoAttentionBlock
CROSS_LAYER = re.compile(r"multi_modal_(vision|language)_layers\.(\d+)\.(.+)")
CROSS_PARTS = {
    "attention.self.query": "self_attn.q", "attention.output.dense": "self_attn.proj",
    "attention.output.LayerNorm": "norm1",
    "crossattention.self.query": "cross_attn.q", "crossattention.output.dense": "cross_attn.proj",
    "crossattention.output.LayerNorm": "norm2",
    "intermediate.dense": "ffn.0", "output.dense": "ffn.2", "output.LayerNorm": "norm3",
}
FUSED_KV = {"attention.self": "self_attn.kv", "crossattention.self": "cross_attn.kv"}  # [key; value]

# official key pattern -> why it is not imported
IGNORED = {
    r"vision_encoder\.(token_embedding|positional_embedding|ln_final)\b.*":
        "CLIP's text-tower leftovers in the vision encoder; M3AE never reads them",
    r"language_encoder\.pooler\..*": "RoBERTa's own pooler; M3AE pools with its multi-modal poolers",
    r"language_encoder\.embeddings\.position_ids": "a constant index buffer",
    r"mim_head\.decoder_pos_embed": "fixed 2-D sin-cos positions; ours are computed, not stored",
    r"irtr_head\..*": "ROCO retrieval's fine-tuned score (one logit); retrieval here scores with the ITM head",
}

# A fine-tuned classifier (nn.Sequential of Linear, LayerNorm, GELU, Linear): the layers of our
# VQAHead / ClassificationHead under `net.`. Kept apart from the model's weights: it is stored
# with its class order (`ablate import-m3ae --task`), or left out.
TASK_HEAD = re.compile(r"(vqa_head|cls_head)\.(\d+)\.(weight|bias)")


@dataclass
class Conversion:
    weights: dict[str, torch.Tensor] = field(default_factory=dict)  # our key -> tensor
    ignored: dict[str, str] = field(default_factory=dict)  # official key -> reason
    head: dict[str, torch.Tensor] = field(default_factory=dict)  # a fine-tuned task head, our head's names
    head_name: str | None = None  # vqa_head | cls_head
    unmapped: list[str] = field(default_factory=list)  # official keys neither mapped nor ignored


class UnmappedKeysError(ValueError):
    """The checkpoint holds keys the map does not know: not an official M3AE checkpoint, or another version."""


def convert_state(state: dict[str, torch.Tensor]) -> Conversion:
    """Official `state_dict` -> ours, through RENAMES, the cross-layer map and IGNORED."""
    out = Conversion()
    pending_kv: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        reason = next((why for pattern, why in IGNORED.items() if re.fullmatch(pattern, key)), None)
        if reason is not None:
            out.ignored[key] = reason
            continue
        head = TASK_HEAD.fullmatch(key)
        if head and out.head_name in (None, head[1]):
            out.head_name = head[1]
            out.head[f"net.{head[2]}.{head[3]}"] = tensor
            continue
        target = _rename(key, tensor)
        if target is not None:
            out.weights[target[0]] = target[1]
            continue
        cross = CROSS_LAYER.fullmatch(key)
        kv = cross and re.fullmatch(r"(attention|crossattention)\.self\.(key|value)\.(weight|bias)", cross[3])
        if kv:
            ours = f"fusion.layers.{cross[2]}.{_stream(cross[1])}.{FUSED_KV[kv[1] + '.self']}.{kv[3]}"
            pending_kv.setdefault(ours, {})[kv[2]] = tensor
            continue
        out.unmapped.append(key)
    for ours, parts in pending_kv.items():
        if set(parts) != {"key", "value"}:
            out.unmapped.append(f"{ours} (only the {sorted(parts)[0]} half)")
            continue
        out.weights[ours] = torch.cat([parts["key"], parts["value"]], dim=0)
    if out.unmapped:
        raise UnmappedKeysError(f"{len(out.unmapped)} key(s) of the checkpoint have no place in this model: "
                                f"{sorted(out.unmapped)[:20]}{' ...' if len(out.unmapped) > 20 else ''}")
    return out


def _stream(official: str) -> str:
    return "image" if official == "vision" else "text"


def _rename(key: str, tensor: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    if key == "vision_encoder.visual.class_embedding":  # [D] -> [1, 1, D]
        return VISION + "cls_token", tensor.reshape(1, 1, -1)
    if key == "vision_encoder.visual.positional_embedding":  # [1 + N, D] -> [1, 1 + N, D]
        return VISION + "pos_embed", tensor.unsqueeze(0)
    for pattern, replacement in RENAMES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key), tensor
    cross = CROSS_LAYER.fullmatch(key)
    if cross:
        part, _, leaf = cross[3].rpartition(".")
        if part in CROSS_PARTS:
            return f"fusion.layers.{cross[2]}.{_stream(cross[1])}.{CROSS_PARTS[part]}.{leaf}", tensor
    return None


def official_sizes(weights: dict[str, torch.Tensor]) -> dict[str, object]:
    """Config overrides read off the converted tensors' shapes (attention heads are not in the
    shapes: they come from the base config, as the official code derives them, width // 64)."""
    def count(pattern: str) -> int:
        return len({m[1] for k in weights if (m := re.fullmatch(pattern, k))})

    patch = weights[VISION + "patch_embed.proj.weight"]
    grid = int(round((weights[VISION + "pos_embed"].shape[1] - 1) ** 0.5))
    sizes: dict[str, object] = {
        "model.vision.width": patch.shape[0], "model.vision.patch_size": patch.shape[-1],
        "model.vision.depth": count(r"vision_encoder\.vit\.blocks\.(\d+)\..*"),
        "model.vision.image_size": grid * patch.shape[-1],
        "model.text.hidden_size": weights["text_encoder.model.embeddings.word_embeddings.weight"].shape[1],
        "model.text.num_layers": count(r"text_encoder\.model\.encoder\.layer\.(\d+)\..*"),
        "model.text.intermediate_size":
            weights["text_encoder.model.encoder.layer.0.intermediate.dense.weight"].shape[0],
        "data.vocab_size": weights["text_encoder.model.embeddings.word_embeddings.weight"].shape[0],
        "model.fusion.hidden_size": weights["fusion.image_proj.weight"].shape[0],
        "model.fusion.num_layers": count(r"fusion\.layers\.(\d+)\..*"),
        "model.fusion.input_norm": False,
    }
    if "objectives.mim.decoder.embed.weight" in weights:  # a fine-tuned checkpoint has no pre-training heads
        sizes["model.mim.decoder_width"] = weights["objectives.mim.decoder.embed.weight"].shape[0]
        sizes["model.mim.decoder_depth"] = count(r"objectives\.mim\.decoder\.blocks\.(\d+)\..*")
    return sizes
