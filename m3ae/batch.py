"""The types that cross module boundaries: a batch of examples and the text vocabulary.

Data builds them, the model and the training loops consume them. Shapes:
B examples, T tokens, 3 x H x W images.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional

import torch


# `Batch.images` are normalised per channel with the (mean, std) the vision tower expects
# (`model.vision.image_norm`): the data pipeline applies them, the model undoes them to draw
# reconstructions in pixel space. "half" maps pixels to [-1, 1]; "clip" is what OpenAI's CLIP
# towers were trained with (and the official M3AE code's clip_transform uses).
IMAGE_NORMS = {
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}
IMAGE_MEAN, IMAGE_STD = IMAGE_NORMS["half"]  # the default


@dataclass(frozen=True)
class TextVocab:
    """What the model needs to know of the tokenizer (to mask and to predict tokens)."""

    size: int
    pad_id: int
    mask_id: int
    cls_id: int
    sep_id: int
    special_ids: tuple[int, ...]  # never masked, never used as random replacements


@dataclass
class Batch:
    images: torch.Tensor  # [B, 3, H, W], normalised
    input_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long, 1 = real token
    word_ids: torch.Tensor  # [B, T] long, index of the word a token belongs to; -1 special/padding
    labels: Optional[torch.Tensor] = None  # VQA: soft answer scores [B, A] float; classification: [B] long
    answer_types: Optional[torch.Tensor] = None  # VQA: [B] long, 0 = CLOSED, 1 = OPEN
    image_ids: Optional[torch.Tensor] = None  # [B] long: texts with the same image id match that image

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device) -> "Batch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v.to(device, non_blocking=True) for k, v in moved.items() if v is not None})
