"""Evaluation: pre-training validation losses, reconstruction pictures, and the
prediction loops the fine-tuning tasks score (all without gradients)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from m3ae.train.runtime import fixed_rng, on_model_device

EVAL_SEED = 1_000_003  # evaluation masks come from their own RNG: the same at every evaluation
N_PICTURES = 8  # validation images in a reconstruction grid


def _loader(dataset, batch_size: int, cfg, model):
    from m3ae.data import make_loader

    return on_model_device(make_loader(dataset, batch_size, train=False, cfg=cfg, seed=cfg.seed), model)


@torch.no_grad()
def evaluate_pretrain(model, val_set, cfg) -> dict[str, float]:
    """Mean validation loss, per-objective losses and accuracies over the first
    `cfg.pretrain.eval_batches` batches, prefixed "val_" (val_loss, val_mim_loss, val_itm_acc, ...)."""
    model.eval()
    sums: dict[str, float] = defaultdict(float)
    seen = 0
    with fixed_rng(cfg.seed + EVAL_SEED):
        for i, batch in enumerate(_loader(val_set, cfg.pretrain.batch_size, cfg, model)):
            if i >= cfg.pretrain.eval_batches:
                break
            if len(batch) < 2:  # ITM needs a partner in the batch
                continue
            out = model(batch)
            values = {"loss": out.loss.item(), **{k: v.item() for k, v in out.losses.items()}, **out.metrics}
            for name, value in values.items():
                sums[f"val_{name}"] += value * len(batch)
            seen += len(batch)
    if not seen:
        raise ValueError(f"the validation split has fewer than 2 examples ({len(val_set)})")
    return {name: total / seen for name, total in sums.items()}


@torch.no_grad()
def save_reconstructions(model, val_set, cfg, path: Path, n: int = N_PICTURES) -> Path:
    """A PNG grid of the same `n` validation images: originals (top row), what the
    encoder sees (middle), the MIM reconstruction with visible patches pasted back (bottom)."""
    from torchvision.utils import save_image

    model.eval()
    batch = next(iter(_loader(val_set, n, cfg, model)))
    with fixed_rng(cfg.seed + EVAL_SEED):
        original, masked, reconstructed = model.reconstruction_images(batch)
    grid = torch.cat([original, masked, reconstructed]).float().clamp(0, 1)
    scale = max(1, 96 // grid.shape[-1])  # small images: enlarge (nearest) so patches stay crisp
    if scale > 1:
        grid = F.interpolate(grid, scale_factor=scale, mode="nearest")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path, nrow=len(original), padding=2, pad_value=1.0)
    return path


def assign_rows(keys: list, rows: dict, example_rows: list[int]) -> list[int]:
    """Give each new key the next row of an encoding table and append every key's row to
    `example_rows`; returns the positions of the new keys (what still needs encoding)."""
    new = []
    for position, key in enumerate(keys):
        if key not in rows:
            rows[key] = len(rows)
            new.append(position)
        example_rows.append(rows[key])
    return new


def pad_tokens(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Right-pad [B, T, ...] tensors with zeros to the longest T and concatenate (batches are
    padded to their own longest text)."""
    length = max(t.shape[1] for t in tensors)
    return torch.cat([F.pad(t, (0, 0) * (t.dim() - 2) + (0, length - t.shape[1])) for t in tensors])


class SplitEncoder:
    """Pooled fused features of a split's examples, each distinct image and each distinct text
    through its unimodal encoder once (a VQA split has ~15 questions per image, and the
    questions come from templates); only the fusion stack and the poolers run per example.
    The same numbers as `model.encode(...).pooled` per batch, to float tolerance.

        encoder = SplitEncoder(model)
        for batch in batches: encoder.add(batch)
        pooled = encoder.pooled()  # [E, 2D], in the order the examples were added
    """

    def __init__(self, model, chunk: int = 256):
        self.model, self.chunk = model, chunk
        self.images: list[torch.Tensor] = []  # [i, 1+N, Dv] per add
        self.texts: list[torch.Tensor] = []  # [t, T, Dt] per add
        self.masks: list[torch.Tensor] = []  # [t, T] per add
        self.image_row: list[int] = []  # each example's row in the image encodings
        self.text_row: list[int] = []  # each example's row in the text encodings
        self._image_rows: dict[int, int] = {}  # image id -> row
        self._text_rows: dict[bytes, int] = {}  # a text's token ids -> row

    def add(self, batch) -> None:
        image_ids = (batch.image_ids if batch.image_ids is not None else
                     torch.arange(len(self.image_row), len(self.image_row) + len(batch)))
        new_images = assign_rows(image_ids.tolist(), self._image_rows, self.image_row)
        if new_images:
            self.images.append(self.model.encode_image(batch.images[new_images]))
        lengths = batch.attention_mask.sum(dim=1).tolist()  # the key is a text's tokens, not its batch's padding
        keys = [row[:n].numpy().tobytes() for row, n in zip(batch.input_ids.cpu(), lengths)]
        new_texts = assign_rows(keys, self._text_rows, self.text_row)
        if new_texts:
            ids, mask = batch.input_ids[new_texts], batch.attention_mask[new_texts]
            self.texts.append(self.model.encode_text(ids, mask))
            self.masks.append(mask)

    def pooled(self) -> torch.Tensor:
        """[E, 2D]: fusion + poolers per example, `chunk` examples at a time, in the order added."""
        texts, masks = pad_tokens(self.texts), pad_tokens(self.masks)
        images = torch.cat(self.images)
        image_row = torch.tensor(self.image_row, device=images.device)
        text_row = torch.tensor(self.text_row, device=images.device)
        # chunks of texts of similar length, each cut to its longest text (padding is right-aligned
        # and masked out): questions are ~16 tokens, a few reach max_length
        order = masks.sum(dim=1)[text_row].argsort()
        pooled = None
        for start in range(0, len(order), self.chunk):
            rows = order[start:start + self.chunk]
            i, t = image_row[rows], text_row[rows]
            real = int(masks[t].sum(dim=1).max())
            out = self.model.pool(self.model.fuse(images[i], texts[t, :real], masks[t, :real]))
            if pooled is None:
                pooled = out.new_empty(len(order), out.shape[1])
            pooled[rows] = out
        return pooled
