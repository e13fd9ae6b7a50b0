"""The M3AE model: two unimodal encoders, a co-attention fusion stack, three objectives.

Reads top to bottom like MAE's models_mae.py: encoders, fusion, pooling, then
one method per pre-training objective, then `forward`.

Pre-training follows the paper's code: each objective has its own pass
through the fusion stack, on the inputs that objective needs,

    MIM  masked image (encoder sees visible patches only) + full text
    MLM  full image + masked text
    ITM  full text + full image, half of the images swapped for another's

(`model.passes=joint`, beyond the paper: MIM and MLM share one pass over the
masked image and the masked text, which saves a fusion pass and a full-image
encoding when ITM is off.)

The unimodal encodings of the full image and full text are computed once and
shared by the passes that use them (an encoder sees one modality, so swapping
images for ITM is an index into the image encodings). The MIM and MLM passes
run the fusion stack only up to their `recon_layer`, and in that last layer
only the stream they decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from m3ae.batch import IMAGE_NORMS, Batch, TextVocab
from m3ae.config import ModelConfig
from m3ae.model.fusion import FusionStates
from m3ae.model.heads import ITMHead, Pooler, init_weights
from m3ae.model.masking import corrupt_tokens, patchify, unpatchify, visible_indices
from m3ae.model.objectives import LossOutput, itm_pairs, normalise_patches
from m3ae.model.streams import draw_base, stream
from m3ae.registry import (FUSION, IMAGE_MASKING, ITM_NEGATIVES, OBJECTIVES, TEXT_ENCODERS, TEXT_MASKING,
                           VISION_ENCODERS)


ImageMask = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # mask [B, N] bool, keep [B, K], ids_restore [B, N]
TextMask = tuple[torch.Tensor, torch.Tensor]  # corrupted ids [B, T], labels [B, T] (IGNORE_INDEX where unmasked)


@dataclass
class Fused:
    """Fused features of unmasked inputs (fine-tuning, retrieval)."""

    image_tokens: torch.Tensor  # [B, 1+N, D] last fusion layer, [CLS] first
    text_tokens: torch.Tensor  # [B, T, D] last fusion layer
    pooled: torch.Tensor  # [B, 2D] text [CLS] pooler ++ image [CLS] pooler


@dataclass
class M3AEOutput:
    """One pre-training step's result."""

    loss: torch.Tensor  # weighted sum of the enabled objectives' losses
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # "mim_loss", "mlm_loss", "itm_loss"
    metrics: dict[str, float] = field(default_factory=dict)  # "mlm_acc", "itm_acc"
    mim_pred: torch.Tensor | None = None  # [B, N, p*p*3], the MIM target's space
    mim_mask: torch.Tensor | None = None  # [B, N] float, 1 = masked


class M3AE(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab: TextVocab):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        # Each part is initialised from its own random stream (m3ae.model.streams), so two
        # settings with the same seed start their shared parts, and the fine-tuning head built
        # after the model, from the same weights.
        base = draw_base()
        # --- encoders
        with stream(base, "vision_encoder"):
            self.vision_encoder = VISION_ENCODERS.get(cfg.vision.encoder)(cfg.vision)
        with stream(base, "text_encoder"):
            self.text_encoder = TEXT_ENCODERS.get(cfg.text.kind)(cfg.text, vocab)
        self.patch_size = cfg.vision.patch_size
        self.grid_size = self.vision_encoder.grid_size
        # --- fusion and pooled output
        with stream(base, "fusion"):
            self.fusion = FUSION.get(cfg.fusion.name)(cfg.fusion, self.vision_encoder.width, self.text_encoder.width)
            self.fusion.apply(init_weights)
        self.hidden_size: int = self.fusion.hidden_size
        with stream(base, "poolers"):
            self.text_pooler = Pooler(self.hidden_size).apply(init_weights)
            self.image_pooler = Pooler(self.hidden_size).apply(init_weights)
        with stream(base, "itm_head"):
            self.itm_head = ITMHead(2 * self.hidden_size).apply(init_weights)  # built even without ITM: retrieval re-uses it
        # --- objectives (their decoders are the "heads" of pre-training)
        self.objectives = nn.ModuleDict()
        for name in ("mim", "mlm", "itm"):
            if getattr(cfg, name).enabled:
                with stream(base, f"objective.{name}"):
                    objective = OBJECTIVES.get(name)(cfg, self.hidden_size, vocab, self.grid_size, self.patch_size)
                    self.objectives[name] = objective.apply(init_weights)
        self.loss_weights = {f"{name}_loss": getattr(cfg, name).weight for name in self.objectives}

    # ------------------------------------------------------------------ encoders and fusion

    def encode_image(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """images [B, 3, H, W], keep [B, K] visible patches (None = all) -> [B, 1+K, Dv]."""
        return self.vision_encoder(images, keep)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [B, T, Dt]."""
        return self.text_encoder(input_ids, attention_mask)

    def fuse(self, image_tokens, text_tokens, attention_mask, num_layers: int | None = None,
             streams: str = "both") -> FusionStates:
        """Co-attention over both streams; see CoAttentionFusion.forward for `num_layers` / `streams`."""
        return self.fusion(image_tokens, text_tokens, attention_mask, num_layers, streams)

    def pool(self, states: FusionStates) -> torch.Tensor:
        """The last layer's [CLS] tokens -> [B, 2D] (text first, as the paper)."""
        return torch.cat([self.text_pooler(states.text[-1]), self.image_pooler(states.image[-1])], dim=-1)

    def encode(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Fused:
        """No masking: fused features for fine-tuning and retrieval."""
        states = self.fuse(self.encode_image(images), self.encode_text(input_ids, attention_mask), attention_mask)
        return Fused(states.image[-1], states.text[-1], self.pool(states))

    def _layer(self, recon_layer: int) -> int:
        return self.fusion.num_layers if recon_layer == -1 else recon_layer

    # ------------------------------------------------------------------ objectives

    def mask_image(self, images: torch.Tensor) -> ImageMask:
        """-> mask [B, N] bool (True = hidden), keep [B, K] visible indices, ids_restore [B, N]."""
        cfg = self.cfg.mim
        mask = IMAGE_MASKING.get(cfg.masking)(images.shape[0], self.grid_size, cfg.mask_ratio, images.device)
        return (mask, *visible_indices(mask))

    def mask_text(self, batch: Batch) -> TextMask:
        """Mask words and 80/10/10-corrupt them -> (corrupted ids [B, T], labels [B, T])."""
        cfg = self.cfg.mlm
        mask = TEXT_MASKING.get(cfg.masking)(batch.input_ids, batch.attention_mask, batch.word_ids,
                                             self.vocab, cfg.mask_ratio)
        return corrupt_tokens(batch.input_ids, mask, self.vocab)

    def forward_mim(self, images: torch.Tensor, image_mask: ImageMask, text_tokens: torch.Tensor,
                    attention_mask: torch.Tensor) -> LossOutput:
        """Encode the visible patches, fuse with the full text up to `mim.recon_layer`, reconstruct."""
        mask, keep, ids_restore = image_mask
        layer = self._layer(self.cfg.mim.recon_layer)
        states = self.fuse(self.encode_image(images, keep), text_tokens, attention_mask, layer, streams="image")
        return self.objectives["mim"](states.image[layer], ids_restore, patchify(images, self.patch_size), mask)

    def forward_mlm(self, image_tokens: torch.Tensor, batch: Batch, text_mask: TextMask) -> LossOutput:
        """Encode the corrupted text, fuse with the full image up to `mlm.recon_layer`, predict the masked words."""
        corrupted, labels = text_mask
        layer = self._layer(self.cfg.mlm.recon_layer)
        text_tokens = self.encode_text(corrupted, batch.attention_mask)
        states = self.fuse(image_tokens, text_tokens, batch.attention_mask, layer, streams="text")
        return self.objectives["mlm"](states.text[layer], batch.attention_mask, labels)

    def forward_joint(self, batch: Batch, image_mask: ImageMask, text_mask: TextMask
                      ) -> tuple[LossOutput, LossOutput]:
        """`model.passes=joint`: the masked image and the masked text in one fusion pass; MIM
        reads its image stream at `mim.recon_layer`, MLM its text stream at `mlm.recon_layer`.
        One pass instead of two (each objective then sees the other modality masked)."""
        (mask, keep, ids_restore), (corrupted, labels) = image_mask, text_mask
        mim_layer, mlm_layer = self._layer(self.cfg.mim.recon_layer), self._layer(self.cfg.mlm.recon_layer)
        streams = "both" if mim_layer == mlm_layer else ("image" if mim_layer > mlm_layer else "text")
        states = self.fuse(self.encode_image(batch.images, keep), self.encode_text(corrupted, batch.attention_mask),
                           batch.attention_mask, max(mim_layer, mlm_layer), streams)
        patches = patchify(batch.images, self.patch_size)
        return (self.objectives["mim"](states.image[mim_layer], ids_restore, patches, mask),
                self.objectives["mlm"](states.text[mlm_layer], batch.attention_mask, labels))

    def forward_itm(self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor, image_ids: torch.Tensor | None) -> LossOutput:
        """Swap a share of the images for negatives (another image of the batch), classify matched or not."""
        cfg = self.cfg.itm
        b = image_tokens.shape[0]
        if image_ids is None:  # every pair is its own image
            image_ids = torch.arange(b, device=image_tokens.device)
        candidates = image_ids[None, :] != image_ids[:, None]  # [B, B]: j is a wrong image for text i
        weights = ITM_NEGATIVES.get(cfg.negatives)(image_tokens[:, 0].detach(), text_tokens[:, 0].detach(),
                                                   input_ids, attention_mask)
        index, labels = itm_pairs(candidates, weights, cfg.negative_ratio)
        states = self.fuse(image_tokens[index], text_tokens, attention_mask)
        return self.objectives["itm"](self.itm_head(self.pool(states)), labels)

    def forward(self, batch: Batch) -> M3AEOutput:
        """A pre-training step on a batch: the enabled objectives and their weighted sum."""
        enabled = self.objectives
        # Each objective draws its masks, negatives and dropout from its own stream
        # (m3ae.model.streams): the same seed gives the same image masks whatever the text side
        # does and the other way round, and the same masks with separate or joint passes.
        base, device = draw_base(), batch.images.device
        image_mask = text_mask = None
        if "mim" in enabled:
            with stream(base, "mim.mask", device):
                image_mask = self.mask_image(batch.images)
        if "mlm" in enabled:
            with stream(base, "mlm.mask", device):
                text_mask = self.mask_text(batch)
        joint = self.cfg.passes == "joint" and image_mask is not None and text_mask is not None
        with stream(base, "encode", device):
            full_image = (self.encode_image(batch.images)
                          if "itm" in enabled or ("mlm" in enabled and not joint) else None)
            full_text = (self.encode_text(batch.input_ids, batch.attention_mask)
                         if "itm" in enabled or ("mim" in enabled and not joint) else None)
        outputs: dict[str, LossOutput] = {}
        if joint:
            with stream(base, "joint", device):
                outputs["mim"], outputs["mlm"] = self.forward_joint(batch, image_mask, text_mask)
        if "mim" in enabled and not joint:
            with stream(base, "mim", device):
                outputs["mim"] = self.forward_mim(batch.images, image_mask, full_text, batch.attention_mask)
        if "mlm" in enabled and not joint:
            with stream(base, "mlm", device):
                outputs["mlm"] = self.forward_mlm(full_image, batch, text_mask)
        if "itm" in enabled:
            with stream(base, "itm", device):
                outputs["itm"] = self.forward_itm(full_image, full_text, batch.input_ids, batch.attention_mask,
                                                  batch.image_ids)
        losses = {f"{name}_loss": out.loss for name, out in outputs.items()}
        metrics = {k: v for out in outputs.values() for k, v in out.metrics.items()}
        total = sum(self.loss_weights[name] * loss for name, loss in losses.items())
        mim = outputs.get("mim")
        return M3AEOutput(total, losses, metrics,
                          mim_pred=None if mim is None else mim.pred.detach(),
                          mim_mask=None if image_mask is None else image_mask[0].float())

    # ------------------------------------------------------------------ pictures and optimiser groups

    @torch.no_grad()
    def reconstruction_images(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(original, masked, reconstructed) [B, 3, H, W] in [0, 1] pixel space. The
        reconstruction shows visible patches as they are and predicted ones in the holes."""
        if "mim" not in self.objectives:
            raise ValueError("reconstruction_images needs MIM (model.mim.enabled is false)")
        was_training = self.training
        self.eval()
        try:
            image_mask = self.mask_image(batch.images)
            text = self.encode_text(batch.input_ids, batch.attention_mask)
            out = self.forward_mim(batch.images, image_mask, text, batch.attention_mask)
            mask = image_mask[0]
        finally:
            self.train(was_training)
        patches = patchify(batch.images, self.patch_size)
        pred = out.pred
        if self.cfg.mim.norm_pix_loss:  # back from per-patch normalised to the image's scale
            _, mean, std = normalise_patches(patches)
            pred = pred * std + mean
        hole = mask[:, :, None]
        masked = torch.where(hole, torch.zeros_like(patches), patches)
        recon = torch.where(hole, pred, patches)
        norm = self.cfg.vision.image_norm
        to_pixels = lambda p: _denormalise(unpatchify(p, self.patch_size, self.grid_size), norm)  # noqa: E731
        return to_pixels(patches), to_pixels(masked), to_pixels(recon)

    def param_groups_by_role(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by role, for learning-rate multipliers: "encoders" (the pre-trained
        towers), "fusion" (projections, co-attention, poolers), "heads" (ITM head, decoders)."""
        roles = {
            "encoders": [self.vision_encoder, self.text_encoder],
            "fusion": [self.fusion, self.text_pooler, self.image_pooler],
            "heads": [self.itm_head, self.objectives],
        }
        return {role: [p for m in modules for p in m.parameters()] for role, modules in roles.items()}


def _denormalise(images: torch.Tensor, norm: str) -> torch.Tensor:
    mean = torch.tensor(IMAGE_NORMS[norm][0], device=images.device)[None, :, None, None]
    std = torch.tensor(IMAGE_NORMS[norm][1], device=images.device)[None, :, None, None]
    return (images * std + mean).clamp(0, 1)


def build_model(cfg: ModelConfig, vocab: TextVocab) -> M3AE:
    """The model a config describes (random init, or local weights the config names:
    the towers' files, then the whole model's `init` checkpoint)."""
    model = M3AE(cfg, vocab)
    if cfg.init is not None:
        from m3ae.train.checkpoint import load_init_weights

        load_init_weights(model, cfg.init, cfg)
    return model
