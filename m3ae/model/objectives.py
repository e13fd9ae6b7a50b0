"""Pre-training objectives as tensor-in, loss-out modules, and ITM negative samplers.

    MIM  pred [B, N, P] vs patchified pixels, MSE on masked patches only
    MLM  logits of the masked tokens vs their ids, cross-entropy (+ accuracy)
    ITM  2-way logits of (text, image) pairs vs matched / mismatched (+ accuracy)

Each returns a `LossOutput`; `M3AE` weights and sums them. A factory in
OBJECTIVES takes (cfg: ModelConfig, hidden_size, vocab, grid, patch_size).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from m3ae.batch import TextVocab
from m3ae.config import ModelConfig
from m3ae.model.masking import IGNORE_INDEX
from m3ae.registry import ITM_NEGATIVES, LANGUAGE_DECODERS, OBJECTIVES, VISION_DECODERS


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar
    metrics: dict[str, float] = field(default_factory=dict)
    pred: torch.Tensor | None = None  # MIM: [B, N, P] in the target's (normalised) space; MLM: [M, V] logits
    target: torch.Tensor | None = None  # MLM: [M] ids of the masked tokens, in the order of `pred`


# --------------------------------------------------------------------------- MIM


def normalise_patches(patches: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-patch zero mean, unit variance (MAE's norm_pix_loss). -> (normalised, mean, std)."""
    mean = patches.mean(dim=-1, keepdim=True)
    std = (patches.var(dim=-1, keepdim=True) + eps).sqrt()
    return (patches - mean) / std, mean, std


class MIMObjective(nn.Module):
    """A vision decoder and the masked-patch MSE."""

    def __init__(self, decoder: nn.Module, norm_pix_loss: bool):
        super().__init__()
        self.decoder = decoder
        self.norm_pix_loss = norm_pix_loss

    def target(self, patches: torch.Tensor) -> torch.Tensor:
        return normalise_patches(patches)[0] if self.norm_pix_loss else patches

    def forward(self, states: torch.Tensor, ids_restore: torch.Tensor, patches: torch.Tensor,
                mask: torch.Tensor) -> LossOutput:
        """states [B, 1+K, D] fused visible tokens; patches [B, N, P] pixels; mask [B, N] True = masked."""
        pred = self.decoder(states, ids_restore)
        per_patch = ((pred - self.target(patches)) ** 2).mean(dim=-1)  # [B, N]
        mask = mask.to(per_patch.dtype)
        return LossOutput((per_patch * mask).sum() / mask.sum(), pred=pred)


@OBJECTIVES.register("mim")
def mim(cfg: ModelConfig, hidden_size: int, vocab: TextVocab, grid: tuple[int, int], patch_size: int):
    decoder = VISION_DECODERS.get(cfg.mim.decoder)(cfg.mim, hidden_size, grid, patch_size * patch_size * 3)
    return MIMObjective(decoder, cfg.mim.norm_pix_loss)


# --------------------------------------------------------------------------- MLM


class MLMObjective(nn.Module):
    """A language decoder and cross-entropy on the masked tokens."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """states [B, T, D]; labels [B, T]: original ids at masked tokens, IGNORE_INDEX elsewhere."""
        select = labels != IGNORE_INDEX
        logits = self.decoder(states, attention_mask, select)  # [M, V]
        targets = labels[select]
        if targets.numel() == 0:  # nothing maskable in the batch (e.g. empty texts)
            return LossOutput(logits.sum() * 0.0, {"mlm_acc": 0.0})
        loss = F.cross_entropy(logits.float(), targets)
        acc = (logits.argmax(dim=-1) == targets).float().mean().item()
        return LossOutput(loss, {"mlm_acc": acc}, pred=logits, target=targets)


@OBJECTIVES.register("mlm")
def mlm(cfg: ModelConfig, hidden_size: int, vocab: TextVocab, grid: tuple[int, int], patch_size: int):
    decoder = LANGUAGE_DECODERS.get(cfg.mlm.decoder)(cfg.mlm, hidden_size, vocab.size, cfg.fusion.num_heads)
    return MLMObjective(decoder)


# --------------------------------------------------------------------------- ITM


class ITMObjective(nn.Module):
    """Cross-entropy of the ITM head's 2-way logits (1 = the pair matches)."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        loss = F.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(dim=-1) == labels).float().mean().item()
        return LossOutput(loss, {"itm_acc": acc})


@OBJECTIVES.register("itm")
def itm(cfg: ModelConfig, hidden_size: int, vocab: TextVocab, grid: tuple[int, int], patch_size: int):
    return ITMObjective()


def itm_pairs(candidates: torch.Tensor, weights: torch.Tensor, negative_ratio: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose which texts get a mismatched image and which image.

    candidates [B, B] bool: image j may serve as a negative for text i (another image);
    weights [B, B] >= 0: how likely j is drawn for i. round(B * ratio) texts (those
    that have a candidate) get an image drawn by weight; the rest keep their own.
    -> (image index per text [B], labels [B]: 1 = matched, 0 = mismatched)."""
    b = candidates.shape[0]
    own = torch.arange(b, device=candidates.device)
    has_candidate = candidates.any(dim=1)
    order = torch.randperm(b, device=candidates.device)
    order = order[has_candidate[order]]  # random order among texts that can get a negative
    chosen = order[: int(b * negative_ratio + 0.5)]
    labels = torch.ones(b, dtype=torch.long, device=candidates.device)
    index = own.clone()
    if len(chosen):
        w = (weights[chosen] * candidates[chosen]).clamp(min=0)
        w = torch.where(w.sum(dim=1, keepdim=True) > 0, w, candidates[chosen].float())
        index[chosen] = torch.multinomial(w, 1).squeeze(1)
        labels[chosen] = 0
    return index, labels


@ITM_NEGATIVES.register("random")
def random_negatives(image_features: torch.Tensor, text_features: torch.Tensor, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor) -> torch.Tensor:
    """Uniform over the other images of the batch (the paper). -> weights [B, B]."""
    b = image_features.shape[0]
    return torch.ones(b, b, device=image_features.device)


@ITM_NEGATIVES.register("hard")
@torch.no_grad()
def hard_negatives(image_features: torch.Tensor, text_features: torch.Tensor, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Images whose pair looks like text i's pair are drawn more often: weight
    softmax(sim / t), sim = mean of the image-image and text-text cosine
    similarities of the unimodal [CLS] features (no gradient). -> weights [B, B]."""
    img = F.normalize(image_features.float(), dim=-1)
    txt = F.normalize(text_features.float(), dim=-1)
    sim = 0.5 * (img @ img.T + txt @ txt.T)
    return torch.softmax(sim / temperature, dim=1)


@ITM_NEGATIVES.register("text_overlap")
@torch.no_grad()
def text_overlap_negatives(image_features: torch.Tensor, text_features: torch.Tensor, input_ids: torch.Tensor,
                           attention_mask: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """The images of the reports that share the most words with text i are drawn
    more often: weight softmax(cos / t) over bag-of-words vectors of the token ids.
    Unlike "hard" it needs no trained features, so from the first step a
    negative tends to share the modality and region (which random negatives
    give away) and only its findings tell it apart. -> weights [B, B]."""
    vocab = int(input_ids.max()) + 1
    words = torch.zeros(input_ids.shape[0], vocab, device=input_ids.device)
    words.scatter_(1, input_ids, attention_mask.float())  # 1 where a token occurs (padding adds 0)
    words = F.normalize(words, dim=-1)
    return torch.softmax(words @ words.T / temperature, dim=1)
