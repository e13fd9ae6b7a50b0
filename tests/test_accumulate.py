"""Gradient accumulation: micro-batched steps give the big batch's gradients.

Exact where the split is exact: a loss that is a mean over examples with no
draws inside the batch. Fine-tuning VQA and classification are such losses
(dropout off, no augmentation); in pre-training MIM alone is, once its mask is
fixed per example (masks are otherwise drawn per forward, and ITM's negatives
within the micro-batch), so the pre-training test fixes it.
"""

from __future__ import annotations

import copy
import importlib

import pytest
import torch

from m3ae.batch import Batch
from m3ae.config import apply_overrides, profile
from m3ae.model.masking import visible_indices
from m3ae.train.accumulate import micro_batches
from m3ae.train.finetune import TaskModel
from m3ae.train.optim import build_optimizer
from m3ae.train.schedule import build_scheduler
from m3ae.tasks import get_task

# the modules, not the functions m3ae.train re-exports under the same names
pretrain_module = importlib.import_module("m3ae.train.pretrain")
finetune_module = importlib.import_module("m3ae.train.finetune")
NO_DROPOUT = {"threads": 1, "model.text.dropout": 0.0, "model.fusion.dropout": 0.0, "data.augment": False}


def _grads(module):
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def _assert_same_grads(big, small):
    assert big.keys() == small.keys() and big
    for name in big:
        torch.testing.assert_close(small[name], big[name], rtol=1e-4, atol=1e-6, msg=name)


def test_micro_batches_split_every_field_in_order():
    batch = Batch(images=torch.arange(10.0).view(10, 1, 1, 1), input_ids=torch.arange(10).view(10, 1),
                  attention_mask=torch.ones(10, 1), word_ids=torch.zeros(10, 1), image_ids=torch.arange(10))
    parts = micro_batches(batch, 4)
    assert [len(p) for p in parts] == [4, 4, 2]
    assert torch.equal(torch.cat([p.image_ids for p in parts]), batch.image_ids)
    assert parts[0].labels is None
    assert micro_batches(batch, 0) == [batch] and micro_batches(batch, 10) == [batch]


def _fixed_mim_mask(model):
    """MIM's mask as a function of the example (every 4th patch visible), not of the forward call."""
    def mask_image(images):
        n = model.grid_size[0] * model.grid_size[1]
        mask = (torch.arange(n) % 4 != 0).expand(images.shape[0], n)
        return (mask, *visible_indices(mask))
    return mask_image


def test_pretrain_step_in_micro_batches_equals_the_big_batch(tmp_path):
    from m3ae.data import make_loader
    from m3ae.train.pretrain import build_pretraining

    cfg = apply_overrides(profile("smoke"), {**NO_DROPOUT, "model.mlm.enabled": False, "model.itm.enabled": False})
    torch.manual_seed(0)
    model, train_set, _ = build_pretraining(cfg, tmp_path)
    batch = next(iter(make_loader(train_set, cfg.pretrain.batch_size, train=True, cfg=cfg, seed=0)))
    grads = {}
    for micro in (0, 4):
        net = copy.deepcopy(model)
        net.mask_image = _fixed_mim_mask(net)
        pcfg = apply_overrides(cfg, {"pretrain.micro_batch_size": micro}).pretrain
        optimizer = build_optimizer(net.param_groups_by_role(), pcfg, net.parameters())
        out = pretrain_module._train_step(net, optimizer, build_scheduler(optimizer, pcfg, 10), batch, pcfg, 1)
        grads[micro] = (_grads(net), out.losses["mim_loss"].item())
    _assert_same_grads(grads[0][0], grads[4][0])
    assert grads[4][1] == pytest.approx(grads[0][1], rel=1e-5)  # the logged loss is the batch's


@pytest.mark.parametrize("task", ["synth_vqa", "synth_cls"])
def test_finetune_step_in_micro_batches_equals_the_big_batch(tmp_path, task):
    from m3ae.data import build_dataset, build_tokenizer, make_loader, text_vocab
    from m3ae.model import build_model

    cfg = apply_overrides(profile("smoke"), NO_DROPOUT)
    spec = get_task(task)
    tokenizer = build_tokenizer(cfg, tmp_path)
    train_set = build_dataset(spec.dataset, "train", cfg, tokenizer, tmp_path)
    torch.manual_seed(0)
    net = TaskModel(build_model(cfg.model, text_vocab(tokenizer)), spec.build_head(_Width(cfg), train_set))
    batch = next(iter(make_loader(train_set, 12, train=True, cfg=cfg, seed=0)))
    results = {}
    for micro in (0, 5):  # 12 = 5 + 5 + 2: unequal shares are weighted by size
        copy_ = copy.deepcopy(net)
        fcfg = apply_overrides(cfg, {"finetune.micro_batch_size": micro}).finetune
        optimizer = build_optimizer(copy_.roles(), fcfg, copy_.parameters())
        loss_of = lambda b, m=copy_: spec.loss(m.backbone, m.head, b)  # noqa: E731
        loss_of.train = copy_.train
        loss = finetune_module._train_step(spec, loss_of, optimizer, build_scheduler(optimizer, fcfg, 10),
                                           batch, fcfg, 1)
        results[micro] = (_grads(copy_), loss)
    _assert_same_grads(results[0][0], results[5][0])
    assert results[5][1] == pytest.approx(results[0][1], rel=1e-5)


class _Width:
    """What a task head needs of the backbone: its fusion width."""

    def __init__(self, cfg):
        self.hidden_size = cfg.model.fusion.hidden_size
