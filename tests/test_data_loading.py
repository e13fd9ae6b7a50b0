"""Tokenizer, datasets and the collate path: the Batch every task feeds the model."""

from __future__ import annotations

import pytest
import torch

from m3ae.batch import IMAGE_MEAN, IMAGE_STD, Batch
from m3ae.config import apply_overrides, profile
from m3ae.data import build_dataset, build_tokenizer, make_loader, subset, text_vocab
from m3ae.data.cache import builder_pid
from m3ae.data.collate import Collate, denormalize, random_resized_crop
from m3ae.data.tokenizer import SPECIAL_TOKENS


@pytest.fixture(scope="module")
def cfg():
    return apply_overrides(profile("smoke"), {"data.synth_pairs": 64, "data.synth_vqa_images": 24,
                                              "data.synth_cls_pairs": 30, "data.synth_irtr_pairs": 20})


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tokenizer(cfg, cache_dir):
    return build_tokenizer(cfg, cache_dir)


def test_tokenizer_is_trained_cached_and_round_trips(cfg, cache_dir, tokenizer, tmp_path):
    entries = list((cache_dir / "tokenizers").glob("wordpiece-*"))
    assert len(entries) == 1 and builder_pid(entries[0]) > 0
    assert build_tokenizer(cfg, cache_dir).get_vocab() == tokenizer.get_vocab()  # loaded from the cache
    assert len(list((cache_dir / "tokenizers").glob("wordpiece-*"))) == 1
    assert len(tokenizer) <= cfg.data.vocab_size
    for token in SPECIAL_TOKENS:
        assert token in tokenizer.get_vocab()
    text = "A small hyperdense nodule is seen in the left upper lung."
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in ids  # the corpus words are in the vocabulary
    assert tokenizer.decode(ids, skip_special_tokens=True) == text.lower()
    # a saved tokenizer directory is accepted as data.tokenizer
    tokenizer.save_pretrained(tmp_path / "tok")
    local = build_tokenizer(apply_overrides(cfg, {"data.tokenizer": str(tmp_path / "tok")}), tmp_path)
    assert local(text)["input_ids"] == ids
    vocab = text_vocab(tokenizer)
    assert vocab.size == len(tokenizer) and vocab.pad_id == tokenizer.pad_token_id
    assert set(vocab.special_ids) == {tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert vocab.mask_id == tokenizer.mask_token_id and vocab.cls_id != vocab.sep_id


def test_missing_tokenizer_directory_is_a_clear_error(cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="no/such/dir"):
        build_tokenizer(apply_overrides(cfg, {"data.tokenizer": str(tmp_path / "no/such/dir")}), tmp_path)


def test_word_ids_follow_word_boundaries(cfg, tokenizer):
    collate = Collate(tokenizer, 16, "pairs", 0, augment=False, seed=0)
    ids, mask, words = collate.tokenize(["Intermediate multilobulated cyst.", "No abscess."])
    assert ids.shape == mask.shape == words.shape and ids.shape[0] == 2
    assert ids.shape[1] == int(mask.sum(dim=1).max()) <= 16  # padded to the longest text, no further
    long_ids, _, _ = collate.tokenize(["cyst " * 40])
    assert long_ids.shape == (1, 16)  # truncated at max_length
    for row in range(2):
        tokens = tokenizer.convert_ids_to_tokens(ids[row].tolist())
        for position, (token, word) in enumerate(zip(tokens, words[row].tolist())):
            if token in SPECIAL_TOKENS:
                assert word == -1
            elif token.startswith("##"):  # a continuation piece belongs to the previous token's word
                assert word == words[row, position - 1]
            else:
                assert word == max(words[row, :position].max().item(), -1) + 1
        assert mask[row].sum() == (ids[row] != tokenizer.pad_token_id).sum()
    assert words[1].tolist()[:4] == [-1, 0, 1, 2] and words[1, 4:].eq(-1).all()


@pytest.mark.parametrize("name, kind", [("synth_pairs", "pairs"), ("synth_vqa", "vqa"), ("synth_cls", "cls"),
                                        ("synth_irtr", "retrieval")])
def test_batches_of_every_task(name, kind, cfg, tokenizer, cache_dir):
    dataset = build_dataset(name, "train", cfg, tokenizer, cache_dir)
    assert dataset.kind == kind
    batch = next(iter(make_loader(dataset, 6, train=True, cfg=cfg, seed=0)))
    size, length = cfg.model.vision.image_size, cfg.model.text.max_length
    assert isinstance(batch, Batch) and len(batch) == 6
    assert batch.images.shape == (6, 3, size, size) and batch.images.dtype == torch.float32
    assert batch.input_ids.shape == batch.attention_mask.shape == batch.word_ids.shape == (6, length)
    assert batch.input_ids.dtype == batch.attention_mask.dtype == batch.word_ids.dtype == torch.long
    assert batch.image_ids.shape == (6,) and batch.image_ids.dtype == torch.long
    pixels = denormalize(batch.images)  # back in [0, 1] (no augmentation in smoke)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    if kind == "vqa":
        assert dataset.answers and batch.labels.shape == (6, len(dataset.answers))
        assert batch.labels.dtype == torch.float32 and torch.all(batch.labels.sum(1) == 1)
        assert batch.answer_types.shape == (6,) and set(batch.answer_types.tolist()) <= {0, 1}
    elif kind == "cls":
        assert dataset.num_classes == 6 and batch.labels.dtype == torch.long
        assert batch.labels.min() >= 0 and batch.labels.max() < 6
    else:
        assert batch.labels is None and batch.answer_types is None
        assert dataset.answers == [] and dataset.num_classes == 0


def test_irtr_image_ids_tell_matching_texts(cfg, tokenizer, cache_dir):
    dataset = build_dataset("synth_irtr", "test", cfg, tokenizer, cache_dir)
    batches = list(make_loader(dataset, 4, train=False, cfg=cfg, seed=0))
    ids = torch.cat([b.image_ids for b in batches])
    assert ids.tolist() == list(range(len(dataset)))  # one report per image, in order
    texts = dataset.texts
    assert all(texts[2 * i] != texts[2 * i + 1] for i in range(len(texts) // 2))  # near misses differ


def test_loader_order_and_augmentation_repeat_with_the_seed(cfg, tokenizer, cache_dir):
    cfg = apply_overrides(cfg, {"data.augment": True})
    dataset = build_dataset("synth_pairs", "train", cfg, tokenizer, cache_dir)
    run = lambda seed: list(make_loader(dataset, 8, train=True, cfg=cfg, seed=seed))  # noqa: E731
    first, again, other = run(1), run(1), run(2)
    assert len(first) == len(dataset) // 8  # train drops the incomplete last batch
    for a, b in zip(first, again):
        assert torch.equal(a.images, b.images) and torch.equal(a.input_ids, b.input_ids)
    assert not torch.equal(first[0].image_ids, other[0].image_ids)
    # evaluation: in order, every example, no augmentation
    plain = list(make_loader(dataset, 8, train=False, cfg=cfg, seed=1))
    assert torch.cat([b.image_ids for b in plain]).tolist() == list(range(len(dataset)))
    reference = torch.stack([dataset[int(i)].image for i in first[0].image_ids]).float() / 255
    augmented = denormalize(first[0].images)
    assert not torch.allclose(augmented, reference, atol=1e-3)  # cropped
    assert (augmented - reference).abs().mean() < 0.2  # but still the same pictures


def test_workers_give_the_same_batches(cfg, tokenizer, cache_dir):
    base = apply_overrides(cfg, {"data.augment": True})
    dataset = build_dataset("synth_vqa", "train", base, tokenizer, cache_dir)
    with_workers = apply_overrides(base, {"data.num_workers": 2})
    a = list(make_loader(dataset, 8, train=True, cfg=with_workers, seed=5))
    b = list(make_loader(dataset, 8, train=True, cfg=with_workers, seed=5))
    assert len(a) == len(b) > 1
    for x, y in zip(a, b):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)


def test_random_resized_crop_keeps_shape_and_identity_at_full_scale():
    images = torch.rand(4, 3, 16, 16)
    out = random_resized_crop(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and torch.isfinite(out).all()
    assert IMAGE_MEAN and IMAGE_STD  # the shared normalisation constants exist


def test_train_fraction_subset_is_deterministic(cfg, tokenizer, cache_dir):
    full = build_dataset("synth_vqa", "train", cfg, tokenizer, cache_dir)
    half = build_dataset("synth_vqa", "train", cfg, tokenizer, cache_dir, fraction=0.5, fraction_seed=3)
    again = subset(full, 0.5, seed=3)
    assert len(half) == round(len(full) * 0.5) and half.texts == again.texts
    assert half.answers == full.answers  # the label set does not shrink
    assert subset(full, 0.5, seed=4).texts != half.texts
    assert subset(full, 1.0) is full
    with pytest.raises(ValueError):
        subset(full, 0.0)


def test_unknown_dataset_and_split_are_clear_errors(cfg, tokenizer, cache_dir):
    with pytest.raises(KeyError, match="synth_vqa"):
        build_dataset("synth_vq", "train", cfg, tokenizer, cache_dir)
    with pytest.raises(ValueError, match="split"):
        build_dataset("synth_vqa", "dev", cfg, tokenizer, cache_dir)


def test_clip_towers_get_clip_normalisation_and_the_model_undoes_it(tmp_path):
    """model.vision.image_norm=clip: the loader normalises with CLIP's mean / std (what the
    official code's clip_transform does for its CLIP tower), the model's reconstructions
    un-normalise with the same, and the paper profile selects it."""
    from m3ae.batch import IMAGE_NORMS
    from m3ae.data.collate import normalize

    assert profile("paper").model.vision.image_norm == "clip"
    assert profile("laptop").model.vision.image_norm == "half"
    half = profile("smoke")
    clip = apply_overrides(half, ["model.vision.image_norm=clip"])
    tokenizer = build_tokenizer(half, tmp_path)
    dataset = build_dataset("synth_pairs", "val", half, tokenizer, tmp_path)
    first = lambda cfg: next(iter(make_loader(dataset, 4, train=False, cfg=cfg, seed=0))).images  # noqa: E731
    pixels = first(half) * 0.5 + 0.5  # [0, 1]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGE_NORMS["clip"])
    assert torch.allclose(first(clip), (pixels - mean) / std, atol=1e-5)
    assert torch.allclose(first(clip), normalize(pixels, "clip"), atol=1e-6)
    assert torch.allclose(denormalize(first(clip), "clip"), pixels, atol=1e-5)
