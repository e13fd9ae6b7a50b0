"""Metric functions against cases worked out by hand."""

import math

import pytest
import torch

from m3ae.train.metrics import accuracy, classification_metrics, macro_f1, retrieval_recall, vqa_accuracy


def test_vqa_soft_score_accuracy_overall_open_closed():
    logits = torch.tensor([[2.0, 1, 0], [0, 3, 1], [1, 0, 5], [0, 0.5, 0.1]])  # arg-max 0, 1, 2, 1
    targets = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 0.6, 1], [0.3, 0.5, 0]])  # scores 1, 0, 1, 0.5
    types = torch.tensor([0, 1, 1, 0])  # closed, open, open, closed
    got = vqa_accuracy(logits, targets, types)
    assert got["overall_acc"] == pytest.approx(62.5)  # 2.5 / 4
    assert got["open_acc"] == pytest.approx(50.0)  # (0 + 1) / 2
    assert got["closed_acc"] == pytest.approx(75.0)  # (1 + 0.5) / 2


def test_vqa_accuracy_without_open_questions_is_nan_for_open():
    got = vqa_accuracy(torch.tensor([[1.0, 0]]), torch.tensor([[1.0, 0]]), torch.tensor([0]))
    assert got["overall_acc"] == 100.0 and got["closed_acc"] == 100.0 and math.isnan(got["open_acc"])


def test_accuracy_and_macro_f1():
    labels = torch.tensor([0, 0, 1, 2])
    predicted = torch.tensor([0, 1, 1, 1])
    logits = torch.nn.functional.one_hot(predicted, 3).float()
    assert accuracy(logits, labels) == pytest.approx(50.0)
    # per class F1 = 2TP / (2TP + FP + FN): class 0: 2/3, class 1: 2/4, class 2: 0
    assert macro_f1(predicted, labels) == pytest.approx(100 * (2 / 3 + 0.5 + 0) / 3)
    assert classification_metrics(logits, labels) == pytest.approx({"acc": 50.0, "macro_f1": 100 * (7 / 6) / 3})


def test_macro_f1_perfect_and_counts_predicted_only_classes():
    labels = torch.tensor([1, 1, 2])
    assert macro_f1(labels, labels) == pytest.approx(100.0)
    # class 3 is only predicted: F1 0 pulls the mean down, as scikit-learn does
    assert macro_f1(torch.tensor([1, 1, 3]), labels) == pytest.approx(100 * (1 + 0 + 0) / 3)


def test_retrieval_recall_both_directions():
    scores = torch.tensor([  # 3 images x 4 texts; texts 2 and 3 both describe image 2
        [0.9, 0.1, 0.5, 0.2],
        [0.8, 0.3, 0.1, 0.0],
        [0.7, 0.2, 0.4, 0.6],
    ])
    text_image = torch.tensor([0, 1, 2, 2])
    got = retrieval_recall(scores, text_image, ks=(1, 2))
    # text queries: t0 -> img0 first, t1 -> img1 first, t2 -> img0, img2 (2nd), t3 -> img2 first
    assert got["ir_r1"] == pytest.approx(75.0) and got["ir_r2"] == pytest.approx(100.0)
    # image queries: img0 -> t0 first; img1 -> t0, t1 (2nd); img2 -> t0, t3 (2nd)
    assert got["tr_r1"] == pytest.approx(100 / 3) and got["tr_r2"] == pytest.approx(100.0)
    assert list(got) == ["ir_r1", "ir_r2", "tr_r1", "tr_r2"]


def test_retrieval_recall_default_names_and_perfect_scores():
    got = retrieval_recall(torch.eye(12), torch.arange(12))
    assert got == {"ir_r1": 100.0, "ir_r5": 100.0, "ir_r10": 100.0, "tr_r1": 100.0, "tr_r5": 100.0, "tr_r10": 100.0}
    reversed_ = retrieval_recall(-torch.eye(12), torch.arange(12))  # the true pair always ranks last
    assert reversed_["ir_r10"] == 0.0 and reversed_["tr_r10"] == 0.0


def test_retrieval_recall_checks_shapes():
    with pytest.raises(ValueError, match=r"text_image must have shape \[4\]"):
        retrieval_recall(torch.zeros(3, 4), torch.arange(3))
