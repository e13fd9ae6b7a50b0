"""Masking of images and texts, and the patch <-> pixel reshapes. Pure functions.

Images are split into a grid of N = H/p * W/p patches in row-major order. An
image masking strategy returns a boolean mask [B, N] (True = masked, hidden
from the encoder). Every strategy masks exactly the same number of patches in
every sample, so the visible patches of a batch stack into one tensor [B, K, D]:

    kept   K = int(N * (1 - ratio))   (MAE's rule), clamped to 1..N-1
    masked N - K

(a 1e-6 slack inside int() keeps e.g. 36 * (1 - 0.75) = 9 from rounding to 8).

Texts: a text masking strategy returns a boolean mask [B, T] over tokens that
are never special tokens or padding. The count per sample follows the ratio:

    token       round(ratio * real tokens)   tokens, at least 1
    whole_word  round(ratio * words)         words (all their pieces), at least 1
    span        round(ratio * words)         words, in runs of consecutive words (SpanBERT)

(round = half up). `corrupt_tokens` then applies BERT's 80/10/10 replacement.
Randomness comes from torch's global RNG (the trainer seeds it), so the same
seed gives the same masks.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from m3ae.batch import TextVocab
from m3ae.registry import IMAGE_MASKING, TEXT_MASKING

IGNORE_INDEX = -100  # label of tokens that carry no MLM loss (torch's cross-entropy default)


# --------------------------------------------------------------------------- patches


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, N, p*p*C], patches row-major, pixels (row, col, channel) inside."""
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)
    x = torch.einsum("bchpwq->bhwpqc", x)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int]) -> torch.Tensor:
    """[B, N, p*p*C] -> [B, C, H, W]; the inverse of `patchify`."""
    b = patches.shape[0]
    p, (gh, gw) = patch_size, grid
    c = patches.shape[-1] // (p * p)
    x = patches.reshape(b, gh, gw, p, p, c)
    x = torch.einsum("bhwpqc->bchpwq", x)
    return x.reshape(b, c, gh * p, gw * p)


# --------------------------------------------------------------------------- image masking


def num_kept(num_patches: int, ratio: float) -> int:
    """Visible patches per sample for a mask ratio (MAE's int(N * (1 - ratio)), kept in 1..N-1)."""
    kept = int(num_patches * (1.0 - ratio) + 1e-6)
    return min(max(kept, 1), num_patches - 1)


@IMAGE_MASKING.register("random")
def random_image_mask(batch_size: int, grid: tuple[int, int], ratio: float,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """MAE: a per-sample random shuffle; the first K patches stay visible. -> bool [B, N]."""
    n = grid[0] * grid[1]
    masked = n - num_kept(n, ratio)
    noise = torch.rand(batch_size, n, device=device)
    rank = noise.argsort(dim=1).argsort(dim=1)  # each patch's place in the shuffle
    return rank < masked


@IMAGE_MASKING.register("block")
def block_image_mask(batch_size: int, grid: tuple[int, int], ratio: float,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """BEiT-style block-wise masking: random rectangles (area >= 4 patches, aspect
    ratio 0.3..3.3) until the target count; when no rectangle fits the remainder,
    the blocks grow by neighbouring patches so the count is exact. -> bool [B, N]."""
    n = grid[0] * grid[1]
    target = n - num_kept(n, ratio)
    # One seed from torch's RNG keeps the result reproducible under torch.manual_seed.
    rng = random.Random(int(torch.randint(0, 2**62, ()).item()))
    masks = [_block_mask_one(rng, grid, target) for _ in range(batch_size)]
    return torch.from_numpy(np.stack(masks).reshape(batch_size, n)).to(device)


def _block_mask_one(rng: random.Random, grid: tuple[int, int], target: int,
                    min_area: int = 4, max_aspect: float = 1 / 0.3) -> np.ndarray:
    h_max, w_max = grid
    mask = np.zeros(grid, dtype=bool)
    count, failures = 0, 0
    while count < target and failures < 10:
        remaining = target - count
        area = rng.uniform(min(min_area, remaining), remaining)
        aspect = math.exp(rng.uniform(-math.log(max_aspect), math.log(max_aspect)))
        h = int(round(math.sqrt(area * aspect)))
        w = int(round(math.sqrt(area / aspect)))
        if 1 <= h <= h_max and 1 <= w <= w_max:
            top, left = rng.randint(0, h_max - h), rng.randint(0, w_max - w)
            block = mask[top:top + h, left:left + w]
            new = h * w - int(block.sum())
            if 0 < new <= remaining:
                block[...] = True
                count += new
                failures = 0
                continue
        failures += 1
    while count < target:  # grow the blocks one neighbouring patch at a time
        grown = np.zeros_like(mask)
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        grown[:, 1:] |= mask[:, :-1]
        grown[:, :-1] |= mask[:, 1:]
        frontier = np.flatnonzero(grown & ~mask) if mask.any() else np.flatnonzero(~mask)
        mask.flat[frontier[rng.randrange(len(frontier))]] = True
        count += 1
    return mask


def visible_indices(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mask [B, N] bool (same count per row) -> (keep [B, K], ids_restore [B, N]).

    keep lists the visible patches in ascending order; ids_restore undoes the
    order "visible first, then masked" (MAE's unshuffle for the decoder)."""
    ids_shuffle = mask.to(torch.uint8).argsort(dim=1, stable=True)  # visible (0) first
    ids_restore = ids_shuffle.argsort(dim=1)
    kept = int((~mask[0]).sum())
    return ids_shuffle[:, :kept], ids_restore


# --------------------------------------------------------------------------- text masking


def num_to_mask(available: torch.Tensor, ratio: float) -> torch.Tensor:
    """Units (tokens or words) to mask per sample: round-half-up of ratio * available,
    at least 1, at most available. available: [B] long -> [B] long."""
    count = torch.floor(available.to(torch.float64) * ratio + 0.5).long()
    return torch.minimum(count.clamp(min=1), available)


def maskable_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, vocab: TextVocab) -> torch.Tensor:
    """bool [B, T]: real tokens that are not special ([CLS], [SEP], [PAD], ...)."""
    special = torch.tensor(vocab.special_ids, device=input_ids.device)
    return attention_mask.bool() & ~torch.isin(input_ids, special)


def _choose(scores: torch.Tensor, eligible: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Per row, the `count` eligible entries with the lowest random score. -> bool, shape of scores."""
    scores = scores.masked_fill(~eligible, 2.0)  # ineligible sort last (scores are in [0, 1))
    rank = scores.argsort(dim=1).argsort(dim=1)
    return rank < count[:, None]


@TEXT_MASKING.register("token")
def token_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, word_ids: torch.Tensor,
               vocab: TextVocab, ratio: float) -> torch.Tensor:
    """Independent sub-word tokens. -> bool [B, T]."""
    eligible = maskable_tokens(input_ids, attention_mask, vocab)
    count = num_to_mask(eligible.sum(dim=1), ratio)
    return _choose(torch.rand(input_ids.shape, device=input_ids.device), eligible, count)


def _words(input_ids: torch.Tensor, attention_mask: torch.Tensor, word_ids: torch.Tensor, vocab: TextVocab
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (eligible [B, T] maskable tokens of a word, index [B, T] each token's word (0 for
    the rest), present [B, W] words with a maskable piece)."""
    eligible = maskable_tokens(input_ids, attention_mask, vocab) & (word_ids >= 0)
    num_words = int(word_ids.max().item()) + 1 if eligible.any() else 1
    index = word_ids.clamp(min=0)
    pieces = torch.zeros(input_ids.shape[0], num_words, dtype=torch.long, device=input_ids.device)
    present = pieces.scatter_add_(1, index, eligible.long()) > 0
    return eligible, index, present


@TEXT_MASKING.register("whole_word")
def whole_word_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, word_ids: torch.Tensor,
                    vocab: TextVocab, ratio: float) -> torch.Tensor:
    """Whole words (every piece of a chosen word), the paper's setting. word_ids: [B, T],
    -1 for special tokens and padding. -> bool [B, T]."""
    eligible, index, present = _words(input_ids, attention_mask, word_ids, vocab)
    count = num_to_mask(present.sum(dim=1), ratio)
    chosen = _choose(torch.rand(present.shape, device=input_ids.device), present, count)
    return chosen.gather(1, index) & eligible


@TEXT_MASKING.register("span")
def span_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, word_ids: torch.Tensor,
              vocab: TextVocab, ratio: float, p: float = 0.2, max_span: int = 10) -> torch.Tensor:
    """SpanBERT's span masking: runs of consecutive whole words, each run's length
    geometric(p) clipped at max_span (mean 3.8 words), started at a word not yet
    masked, until round(ratio * words) words are masked (the last run is cut to
    fit). A phrase such as "small round mass in the left upper lung" is then often
    hidden together, so the rest of the report cannot give it away. -> bool [B, T]."""
    eligible, index, present = _words(input_ids, attention_mask, word_ids, vocab)
    present = present.cpu()
    num_words = present.shape[1]
    count = num_to_mask(present.sum(dim=1), ratio).tolist()
    rng = random.Random(int(torch.randint(0, 2**62, ()).item()))  # torch's RNG seeds it: reproducible
    log_q = math.log(1.0 - p)
    chosen = torch.zeros_like(present)
    for row, target in enumerate(count):
        words = present[row].nonzero().flatten().tolist()
        masked: set[int] = set()
        while len(masked) < target:
            start = rng.choice([w for w in words if w not in masked])
            length = min(max_span, 1 + int(math.log(1.0 - rng.random()) / log_q))
            for w in range(start, start + length):  # the run stops at the text's end
                if len(masked) == target or w >= num_words:
                    break
                if present[row, w]:
                    masked.add(w)
        chosen[row, sorted(masked)] = True
    return chosen.to(input_ids.device).gather(1, index) & eligible


def corrupt_tokens(input_ids: torch.Tensor, mask: torch.Tensor, vocab: TextVocab
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10: of the masked tokens 80% become [MASK], 10% a random
    non-special token, 10% stay. -> (corrupted input_ids [B, T], labels [B, T]
    with the original id at masked positions and IGNORE_INDEX elsewhere)."""
    labels = input_ids.masked_fill(~mask, IGNORE_INDEX)
    draw = torch.rand(input_ids.shape, device=input_ids.device)
    to_mask_token = mask & (draw < 0.8)
    to_random = mask & (draw >= 0.8) & (draw < 0.9)
    special = torch.tensor(vocab.special_ids, device=input_ids.device)
    ordinary = torch.arange(vocab.size, device=input_ids.device)
    ordinary = ordinary[~torch.isin(ordinary, special)]
    random_ids = ordinary[torch.randint(len(ordinary), input_ids.shape, device=input_ids.device)]
    corrupted = input_ids.masked_fill(to_mask_token, vocab.mask_id)
    corrupted = torch.where(to_random, random_ids, corrupted)
    return corrupted, labels
