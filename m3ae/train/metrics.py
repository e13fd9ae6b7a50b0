"""Metric functions: plain tensors in, floats out (percentages, as the paper reports).

- VQA: a prediction scores the soft target score of its arg-max answer
  (1.0 for the given answer), averaged overall and per answer type.
- Classification: accuracy and macro-F1.
- Retrieval: recall@k in both directions from an image x text score matrix.
"""

from __future__ import annotations

import math

import torch

CLOSED, OPEN = 0, 1  # answer_types codes (see m3ae.batch.Batch)


def _percent(hits: torch.Tensor) -> float:
    """Mean of a 0/1 (or soft) tensor in percent; NaN for an empty tensor."""
    return 100.0 * hits.float().mean().item() if hits.numel() else math.nan


def vqa_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-question score: the target score of the predicted answer.

    logits, targets: [N, A] (targets are soft scores in [0, 1]) -> [N].
    """
    predicted = logits.argmax(dim=1)
    return targets.gather(1, predicted[:, None]).squeeze(1)


def vqa_accuracy(logits: torch.Tensor, targets: torch.Tensor, answer_types: torch.Tensor) -> dict[str, float]:
    """overall_acc, open_acc, closed_acc in percent (NaN when a type has no question).

    logits, targets: [N, A]; answer_types: [N] (0 closed, 1 open).
    """
    scores = vqa_scores(logits, targets)
    return {
        "overall_acc": _percent(scores),
        "open_acc": _percent(scores[answer_types == OPEN]),
        "closed_acc": _percent(scores[answer_types == CLOSED]),
    }


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent. logits: [N, C]; labels: [N]."""
    return _percent(logits.argmax(dim=1) == labels)


def macro_f1(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """Unweighted mean of per-class F1 in percent, over the classes that occur
    in the labels or the predictions (as scikit-learn's default). predicted, labels: [N]."""
    classes = torch.unique(torch.cat([predicted, labels]))
    f1s = []
    for c in classes:
        tp = ((predicted == c) & (labels == c)).sum().item()
        fp = ((predicted == c) & (labels != c)).sum().item()
        fn = ((predicted != c) & (labels == c)).sum().item()
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return 100.0 * sum(f1s) / len(f1s) if f1s else math.nan


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    return {"acc": accuracy(logits, labels), "macro_f1": macro_f1(logits.argmax(dim=1), labels)}


def retrieval_recall(scores: torch.Tensor, text_image: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways, in percent.

    scores: [I, T], higher = better match of image i and text t.
    text_image: [T], the index (row of `scores`) of each text's image.
    ir_rk: a text queries the images; a hit when its image is in the top k.
    tr_rk: an image queries the texts; a hit when any of its texts is in the top k
    (images with no text are left out).
    """
    n_images, n_texts = scores.shape
    if text_image.shape != (n_texts,):
        raise ValueError(f"text_image must have shape [{n_texts}], got {list(text_image.shape)}")
    metrics = {}
    # image retrieval: rank images for every text (columns)
    rank_images = scores.t().argsort(dim=1, descending=True)  # [T, I]
    for k in ks:
        hits = (rank_images[:, :k] == text_image[:, None]).any(dim=1)
        metrics[f"ir_r{k}"] = _percent(hits)
    # text retrieval: rank texts for every image (rows)
    rank_texts = scores.argsort(dim=1, descending=True)  # [I, T]
    has_text = torch.zeros(n_images, dtype=torch.bool)
    has_text[text_image] = True
    owner = text_image[rank_texts]  # [I, T]: image of the text at each rank
    for k in ks:
        hits = (owner[:, :k] == torch.arange(n_images)[:, None]).any(dim=1)
        metrics[f"tr_r{k}"] = _percent(hits[has_text])
    return {f"{d}_r{k}": metrics[f"{d}_r{k}"] for d in ("ir", "tr") for k in ks}
