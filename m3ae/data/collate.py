"""One collate path for every task: examples -> `m3ae.batch.Batch`, and the DataLoader.

Images: uint8 [3, S, S] -> float in [0, 1] -> (train, data.augment) random
resized crop with scale (0.8, 1) and aspect ratio (3/4, 4/3), back to S x S,
one batched grid_sample -> normalised per channel with the tower's
`model.vision.image_norm` (m3ae.batch.IMAGE_NORMS: 0.5 / 0.5 by default, pixels
map to [-1, 1]; CLIP's mean / std for CLIP towers; the model un-normalises with
the same constants). No flips: left and right are labels here.
Texts: truncated to model.text.max_length, padded to the longest in the batch; word ids from the fast
tokenizer's word boundaries (-1 for special tokens and padding).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, get_worker_info

from m3ae.batch import IMAGE_NORMS, Batch
from m3ae.data.dataset import Example, TaskDataset

# Batches are a few dozen short texts: the tokenizer's own thread pool gains nothing, competes
# with torch for the cores, and warns (then disables itself) in forked DataLoader workers.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


def _mean_std(images: torch.Tensor, norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = IMAGE_NORMS[norm]
    as_tensor = lambda v: torch.tensor(v, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)  # noqa: E731
    return as_tensor(mean), as_tensor(std)


def normalize(images: torch.Tensor, norm: str = "half") -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> normalised with IMAGE_NORMS[norm]."""
    mean, std = _mean_std(images, norm)
    return (images - mean) / std


def denormalize(images: torch.Tensor, norm: str = "half") -> torch.Tensor:
    """Inverse of `normalize` (back to [0, 1] pixels, e.g. for reconstruction PNGs)."""
    mean, std = _mean_std(images, norm)
    return images * std + mean


def random_resized_crop(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop of CROP_SCALE of the area and CROP_RATIO aspect,
    resized back to the input size. [B, C, H, W] -> [B, C, H, W]."""
    b = images.shape[0]
    area = torch.empty(b).uniform_(*CROP_SCALE, generator=generator)
    log_ratio = torch.empty(b).uniform_(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator=generator)
    w = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)  # crop width / image width
    h = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
    cx = (torch.rand(b, generator=generator) * 2 - 1) * (1 - w)  # centre in [-1, 1] coordinates
    cy = (torch.rand(b, generator=generator) * 2 - 1) * (1 - h)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Collate:
    """Examples -> Batch. Picklable; its augmentation generator is re-seeded in
    each DataLoader worker from the worker's seed, so runs repeat exactly."""

    def __init__(self, tokenizer, max_length: int, kind: str, num_answers: int, augment: bool, seed: int,
                 image_norm: str = "half"):
        self.tokenizer, self.max_length, self.kind = tokenizer, max_length, kind
        self.image_norm = image_norm
        self.num_answers, self.augment = num_answers, augment
        self.generator = torch.Generator().manual_seed(seed)
        self._worker = None

    def __call__(self, examples: list[Example]) -> Batch:
        info = get_worker_info()
        if info is not None and self._worker != info.id:  # first batch in this worker
            self._worker = info.id
            self.generator.manual_seed(info.seed)
        images = torch.stack([e.image for e in examples]).float().div_(255)
        if self.augment:
            images = random_resized_crop(images, self.generator)
        input_ids, attention_mask, word_ids = self.tokenize([e.text for e in examples])
        return Batch(images=normalize(images, self.image_norm), input_ids=input_ids, attention_mask=attention_mask,
                     word_ids=word_ids, labels=self.labels(examples),
                     answer_types=torch.tensor([e.answer_type for e in examples]) if self.kind == "vqa" else None,
                     image_ids=torch.tensor([e.image_id for e in examples]))

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, T] input ids, attention mask and word ids (-1 for special tokens and padding)."""
        # padded to the batch's longest text, not to max_length: a VQA question is ~16 tokens, and
        # padding to 32 doubled the text side's cost for nothing (padding is masked out everywhere)
        enc = self.tokenizer(texts, padding="longest", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        word_ids = torch.tensor([[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(texts))])
        return enc["input_ids"].long(), enc["attention_mask"].long(), word_ids.long()

    def labels(self, examples: list[Example]):
        if self.kind == "vqa":  # soft scores [B, A]
            scores = torch.zeros(len(examples), self.num_answers)
            for row, (ids, values) in enumerate(e.target for e in examples):
                scores[row, list(ids)] = torch.tensor(values, dtype=torch.float)
            return scores
        if self.kind == "cls":
            return torch.tensor([e.target for e in examples], dtype=torch.long)
        return None


def make_loader(dataset: TaskDataset, batch_size: int, *, train: bool, cfg, seed: int) -> DataLoader:
    """A DataLoader of `Batch`es. train=True shuffles (seeded: the order repeats
    for the same seed), augments when cfg.data.augment, and drops a last
    incomplete batch (ITM needs full batches); evaluation keeps every example in order."""
    if dataset.tokenizer is None:
        raise ValueError(f"{dataset.name}: the dataset has no tokenizer (build it with build_dataset)")
    collate = Collate(dataset.tokenizer, cfg.model.text.max_length, dataset.kind, len(dataset.answers),
                      augment=bool(cfg.data.augment and train), seed=seed, image_norm=cfg.model.vision.image_norm)
    workers = cfg.data.num_workers
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, drop_last=train and len(dataset) > batch_size,
                      collate_fn=collate, num_workers=workers, persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed))
