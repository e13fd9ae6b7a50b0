"""Common random numbers: with the same seed, settings that differ in one part draw the same
initial weights for the parts they share, the same fine-tuning head, and the same masks on the
side they do not change (m3ae.model.streams). The data order is the loader's own generator,
seeded by the trial seed and the epoch alone (m3ae.data.collate.make_loader)."""

from __future__ import annotations

import pytest
import torch

import m3ae.model.m3ae as m3ae_module
from m3ae.model import build_model
from m3ae.train.runtime import seed_everything
from test_model import VOCAB, make_batch, model_cfg

SHARED = ("vision_encoder", "text_encoder", "fusion", "text_pooler", "image_pooler", "itm_head")
CORRUPT = m3ae_module.corrupt_tokens
DROPOUT = ("model.fusion.dropout=0.1", "model.text.dropout=0.1")  # every random draw counts


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def built(*overrides: str, seed: int = 3):
    """The model and a fine-tuning head built after it, as finetune() does after seed_everything."""
    seed_everything(seed)
    model = build_model(model_cfg(*overrides), VOCAB)
    head = torch.nn.Linear(2 * model.hidden_size, 5)
    return model, head


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("other", [
    ["model.mlm.decoder=transformer"],  # decoder.yaml
    ["model.mim.decoder=mlp"],
    ["model.itm.enabled=false"],  # objectives.yaml
    ["model.mim.enabled=false"],
    ["model.mim.mask_ratio=0.25", "model.mlm.mask_ratio=0.5"],  # mask_ratio.yaml
])
def test_shared_parts_and_the_head_start_from_the_same_weights(other):
    a, head_a = built()
    b, head_b = built(*other)
    for part in SHARED:
        assert same_weights(getattr(a, part), getattr(b, part)), part
    if "mlp" in str(other) or "enabled=false" in str(other):  # the MLM decoder is shared there
        if "mlm" in a.objectives and "mlm" in b.objectives:
            assert same_weights(a.objectives["mlm"], b.objectives["mlm"])
    assert torch.equal(head_a.weight, head_b.weight)
    assert not same_weights(a.fusion, built(seed=4)[0].fusion)  # and the seed still matters


def _training_draws(monkeypatch, *overrides: str, steps: int = 3) -> tuple[list, list]:
    """The MIM masks and the MLM masks of a few training forwards (dropout on)."""
    text_masks = []

    def recorded(input_ids, mask, vocab):
        text_masks.append(mask.clone())
        return CORRUPT(input_ids, mask, vocab)

    monkeypatch.setattr(m3ae_module, "corrupt_tokens", recorded)
    model, _ = built(*DROPOUT, *overrides)
    model.train()
    batch = make_batch()
    image_masks = [model(batch).mim_mask for _ in range(steps)]
    return image_masks, text_masks


def _equal(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_image_masks_do_not_depend_on_the_text_side_or_other_objectives(monkeypatch):
    reference, _ = _training_draws(monkeypatch)
    for other in (["model.mlm.mask_ratio=0.5"], ["model.mlm.decoder=transformer"], ["model.itm.enabled=false"],
                  ["model.mlm.recon_layer=1"]):
        assert _equal(reference, _training_draws(monkeypatch, *other)[0]), other


def test_text_masks_do_not_depend_on_the_image_side_or_other_objectives(monkeypatch):
    _, reference = _training_draws(monkeypatch)
    for other in (["model.mim.mask_ratio=0.25"], ["model.mim.decoder=mlp"], ["model.mim.enabled=false"],
                  ["model.mim.recon_layer=-1"], ["model.itm.enabled=false"]):
        assert _equal(reference, _training_draws(monkeypatch, *other)[1]), other


def test_a_lower_image_ratio_masks_a_subset_of_the_patches(monkeypatch):
    """Same noise, fewer patches masked: the masks are nested, the closest pairing two ratios can have."""
    low, _ = _training_draws(monkeypatch, "model.mim.mask_ratio=0.25")
    high, _ = _training_draws(monkeypatch, "model.mim.mask_ratio=0.75")
    assert all(bool((lo <= hi).all()) and lo.sum() < hi.sum() for lo, hi in zip(low, high))
