"""Masking and patch reshapes: exact counts, strategy properties, 80/10/10, determinism."""

from __future__ import annotations

import pytest
import torch

from m3ae.batch import TextVocab
from m3ae.model.masking import (IGNORE_INDEX, block_image_mask, corrupt_tokens, num_kept, num_to_mask, patchify,
                                random_image_mask, span_mask, token_mask, unpatchify, visible_indices,
                                whole_word_mask)
from m3ae.registry import IMAGE_MASKING, TEXT_MASKING

VOCAB = TextVocab(size=400, pad_id=0, mask_id=4, cls_id=2, sep_id=3, special_ids=(0, 1, 2, 3, 4))


def test_patchify_round_trips_and_orders_patches_row_major():
    images = torch.randn(2, 3, 32, 48)
    patches = patchify(images, 8)
    assert patches.shape == (2, 4 * 6, 8 * 8 * 3)
    assert torch.equal(unpatchify(patches, 8, (4, 6)), images)
    # patch 7 = row 1, column 1; its first pixel is image pixel (8, 8), channels last
    assert torch.equal(patches[0, 7, :3], images[0, :, 8, 8])


@pytest.mark.parametrize("num_patches, ratio, kept", [(196, 0.75, 49), (36, 0.75, 9), (16, 0.75, 4),
                                                      (324, 0.75, 81), (36, 0.5, 18), (10, 0.7, 3),
                                                      (16, 0.99, 1), (16, 0.01, 15)])
def test_kept_count_is_maes_rounding_kept_in_range(num_patches, ratio, kept):
    assert num_kept(num_patches, ratio) == kept


@pytest.mark.parametrize("name", IMAGE_MASKING.names())
@pytest.mark.parametrize("grid, ratio", [((4, 4), 0.75), ((6, 6), 0.5), ((14, 14), 0.75), ((14, 14), 0.4),
                                         ((6, 6), 0.1), ((18, 18), 0.9)])
def test_every_image_masking_masks_exactly_the_configured_share_per_sample(name, grid, ratio):
    torch.manual_seed(0)
    mask = IMAGE_MASKING.get(name)(16, grid, ratio)
    n = grid[0] * grid[1]
    assert mask.shape == (16, n) and mask.dtype == torch.bool
    assert (mask.sum(dim=1) == n - num_kept(n, ratio)).all()
    assert len({tuple(row.tolist()) for row in mask}) > 1  # per-sample masks differ


@pytest.mark.parametrize("name", IMAGE_MASKING.names())
def test_image_masking_is_reproducible_from_torchs_seed(name):
    masking = IMAGE_MASKING.get(name)
    torch.manual_seed(5)
    first = masking(8, (14, 14), 0.75)
    torch.manual_seed(5)
    assert torch.equal(masking(8, (14, 14), 0.75), first)


def _boundary_per_masked_patch(mask: torch.Tensor, grid: tuple[int, int]) -> float:
    """Edges between a masked and a visible patch, per masked patch (4 for isolated patches)."""
    m = mask.view(-1, *grid)
    edges = (m[:, 1:] != m[:, :-1]).sum() + (m[:, :, 1:] != m[:, :, :-1]).sum()
    return float(edges / m.sum())


def test_block_masking_masks_contiguous_blocks_random_does_not():
    torch.manual_seed(0)
    grid = (14, 14)
    for ratio in (0.4, 0.75):
        block = _boundary_per_masked_patch(block_image_mask(32, grid, ratio), grid)
        random = _boundary_per_masked_patch(random_image_mask(32, grid, ratio), grid)
        assert block < 0.5 * random, (ratio, block, random)


def test_visible_indices_list_unmasked_patches_and_restore_order():
    torch.manual_seed(0)
    mask = random_image_mask(4, (4, 4), 0.75)
    keep, ids_restore = visible_indices(mask)
    assert keep.shape == (4, 4)
    assert (~mask.gather(1, keep)).all()
    assert (keep.diff(dim=1) > 0).all()  # ascending: the encoder sees patches in image order
    masked = torch.where(mask)[1].view(4, 12)
    shuffled = torch.cat([keep, masked], dim=1)  # the decoder's order: visible, then mask tokens
    assert torch.equal(shuffled.gather(1, ids_restore), torch.arange(16).expand(4, 16))


# --------------------------------------------------------------------------- text


def _texts(batch_size=6, length=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB.size, (batch_size, length), generator=g)
    lengths = torch.tensor([20, 17, 12, 9, 6, 4])[:batch_size]
    attention = (torch.arange(length)[None, :] < lengths[:, None]).long()
    ids[:, 0] = VOCAB.cls_id
    ids[torch.arange(batch_size), lengths - 1] = VOCAB.sep_id
    ids[attention == 0] = VOCAB.pad_id
    # words of 1-3 pieces: token t belongs to word t // 3 for t % 3 != 2, else to its own
    word_ids = torch.tensor([(t - 1) // 2 for t in range(length)]).expand(batch_size, length).clone()
    special = (ids == VOCAB.cls_id) | (ids == VOCAB.sep_id) | (attention == 0)
    word_ids[special] = -1
    return ids, attention, word_ids


@pytest.mark.parametrize("ratio", [0.15, 0.3, 0.5, 0.8])
def test_token_masking_count_follows_the_ratio_and_skips_specials(ratio):
    torch.manual_seed(0)
    ids, attention, word_ids = _texts()
    mask = token_mask(ids, attention, word_ids, VOCAB, ratio)
    real = attention.sum(dim=1) - 2  # minus [CLS] and [SEP]
    expected = torch.clamp(torch.floor(real * ratio + 0.5), min=1).long()
    assert torch.equal(mask.sum(dim=1), expected)
    assert not mask[attention == 0].any()
    assert not mask[(ids == VOCAB.cls_id) | (ids == VOCAB.sep_id)].any()


@pytest.mark.parametrize("ratio", [0.15, 0.5])
def test_whole_word_masking_masks_every_piece_of_the_chosen_words(ratio):
    torch.manual_seed(0)
    ids, attention, word_ids = _texts()
    mask = whole_word_mask(ids, attention, word_ids, VOCAB, ratio)
    for b in range(ids.shape[0]):
        words = word_ids[b][word_ids[b] >= 0]
        chosen = set(word_ids[b][mask[b]].tolist())
        for w in words.unique().tolist():  # a word is masked whole or not at all
            pieces = mask[b][word_ids[b] == w]
            assert pieces.all() or not pieces.any()
        assert len(chosen) == max(1, int(len(words.unique()) * ratio + 0.5))
    assert not mask[word_ids < 0].any()


@pytest.mark.parametrize("ratio", [0.15, 0.4, 0.8])
def test_span_masking_masks_the_ratio_of_whole_words(ratio):
    torch.manual_seed(0)
    ids, attention, word_ids = _texts()
    mask = span_mask(ids, attention, word_ids, VOCAB, ratio)
    for b in range(ids.shape[0]):
        words = word_ids[b][word_ids[b] >= 0].unique().tolist()
        for w in words:
            pieces = mask[b][word_ids[b] == w]
            assert pieces.all() or not pieces.any()
        assert len(set(word_ids[b][mask[b]].tolist())) == max(1, int(len(words) * ratio + 0.5))
    assert not mask[word_ids < 0].any()


def _runs(word_mask: torch.Tensor) -> int:
    """Runs of consecutive True in a [W] bool vector."""
    starts = word_mask.clone()
    starts[1:] &= ~word_mask[:-1]
    return int(starts.sum())


def test_span_masking_hides_runs_of_consecutive_words():
    """Same number of masked words, far fewer runs than word-by-word masking."""
    torch.manual_seed(0)
    ids = torch.randint(5, VOCAB.size, (64, 42))
    attention = torch.ones_like(ids)
    ids[:, 0], ids[:, -1] = VOCAB.cls_id, VOCAB.sep_id
    word_ids = torch.arange(-1, 41).expand(64, 42).clone()  # one piece per word, 40 words
    word_ids[:, -1] = -1
    spans = span_mask(ids, attention, word_ids, VOCAB, 0.3)
    words = whole_word_mask(ids, attention, word_ids, VOCAB, 0.3)
    assert torch.equal(spans.sum(dim=1), words.sum(dim=1))  # 12 words each
    runs = lambda m: sum(_runs(row[1:-1]) for row in m) / len(m)  # noqa: E731
    assert runs(spans) < 0.6 * runs(words)


def test_at_least_one_token_is_masked_even_in_short_texts():
    assert torch.equal(num_to_mask(torch.tensor([0, 1, 2, 3, 10, 100]), 0.15), torch.tensor([0, 1, 1, 1, 2, 15]))


@pytest.mark.parametrize("name", TEXT_MASKING.names())
def test_every_text_masking_is_reproducible_and_never_masks_padding(name):
    ids, attention, word_ids = _texts()
    masking = TEXT_MASKING.get(name)
    torch.manual_seed(3)
    first = masking(ids, attention, word_ids, VOCAB, 0.3)
    torch.manual_seed(3)
    assert torch.equal(masking(ids, attention, word_ids, VOCAB, 0.3), first)
    assert (first.sum(dim=1) >= 1).all() and not first[attention == 0].any()


def test_corruption_is_80_10_10_and_labels_only_masked_tokens():
    torch.manual_seed(0)
    ids = torch.randint(5, VOCAB.size, (200, 100))
    mask = torch.rand(ids.shape) < 0.5
    corrupted, labels = corrupt_tokens(ids, mask, VOCAB)
    assert torch.equal(labels[mask], ids[mask]) and (labels[~mask] == IGNORE_INDEX).all()
    assert torch.equal(corrupted[~mask], ids[~mask])
    n = mask.sum().item()
    to_mask = (corrupted[mask] == VOCAB.mask_id).sum().item() / n
    kept = (corrupted[mask] == ids[mask]).sum().item() / n
    assert abs(to_mask - 0.8) < 0.01
    assert abs(kept - 0.1) < 0.01  # (a random draw equal to the original is 1 in 395)
    replaced = corrupted[mask & (corrupted != VOCAB.mask_id) & (corrupted != ids)]
    assert not torch.isin(replaced, torch.tensor(VOCAB.special_ids)).any()
