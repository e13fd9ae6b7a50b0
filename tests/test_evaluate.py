"""Evaluation that encodes each image and each question once gives the per-question path's numbers."""

from __future__ import annotations

import pytest
import torch

from m3ae.config import apply_overrides, profile
from m3ae.data import build_dataset, build_tokenizer, make_loader, text_vocab
from m3ae.model import build_model
from m3ae.train import get_task
from m3ae.train.evaluate import SplitEncoder
from m3ae.train.metrics import classification_metrics, vqa_accuracy


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = apply_overrides(profile("smoke"), {"threads": 1, "finetune.eval_batch_size": 40})
    cache = tmp_path_factory.getbasetemp() / "ablate-train" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(cfg, cache)
    torch.manual_seed(0)
    model = build_model(cfg.model, text_vocab(tokenizer)).eval()
    return cfg, cache, tokenizer, model


def per_question(model, head, dataset, cfg):
    """The reference: every example through both encoders, one training-size batch at a time."""
    outputs, batches = [], []
    with torch.no_grad():
        for batch in make_loader(dataset, cfg.finetune.batch_size, train=False, cfg=cfg, seed=cfg.seed):
            pooled = model.encode(batch.images, batch.input_ids, batch.attention_mask).pooled
            outputs.append(head(pooled) if head is not None else pooled)
            batches.append(batch)
    return torch.cat(outputs), batches


def test_split_encoder_pools_like_the_per_question_path(setup):
    cfg, cache, tokenizer, model = setup
    dataset = build_dataset("synth_vqa", "val", cfg, tokenizer, cache)
    expected, _ = per_question(model, None, dataset, cfg)
    encoder = SplitEncoder(model, chunk=33)  # chunks that do not line up with the batches
    with torch.inference_mode():
        for batch in make_loader(dataset, 40, train=False, cfg=cfg, seed=cfg.seed):
            encoder.add(batch)
        pooled = encoder.pooled()
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-4)
    # and it did encode less: each image once, each distinct question once
    assert sum(len(t) for t in encoder.images) == len(set(dataset.image_index.tolist())) < len(dataset)
    assert sum(len(t) for t in encoder.texts) == len(set(dataset.texts)) < len(dataset)


@pytest.mark.parametrize("task_name", ["synth_vqa", "synth_cls"])
def test_task_metrics_equal_the_per_question_path(setup, task_name):
    cfg, cache, tokenizer, model = setup
    task = get_task(task_name)
    train = build_dataset(task.dataset, "train", cfg, tokenizer, cache)
    test = build_dataset(task.dataset, "test", cfg, tokenizer, cache)
    torch.manual_seed(1)
    head = task.build_head(model, train).eval()
    logits, batches = per_question(model, head, test, cfg)
    labels = torch.cat([b.labels for b in batches])
    if task_name == "synth_vqa":
        expected = vqa_accuracy(logits, labels, torch.cat([b.answer_types for b in batches]))
    else:
        expected = classification_metrics(logits, labels)
    with torch.inference_mode():
        got = task.evaluate(model, head, test, cfg)
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=1e-9), name
