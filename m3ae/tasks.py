"""Fine-tuning tasks: which dataset, which head, which loss, which metrics.

Each task is a registered `Task` (see m3ae.registry.TASKS). Three kinds:
- `VQATask`: an answer classifier on the pooled features, trained with binary
  cross-entropy over soft answer scores x number of answers (the paper's loss);
  overall / open / closed accuracy.
- `ClassificationTask`: a classifier, cross-entropy; accuracy and macro-F1.
- `RetrievalTask`: no new head, the ITM head is the score; trained with
  in-batch negatives; recall@1/5/10 both ways over all test image-text pairs.

A task's description (dataset, metrics, headline) is what a study file is checked
against, so this module imports torch only inside the methods that train and score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from m3ae.registry import TASKS

if TYPE_CHECKING:
    import torch
    from torch import nn

VQA_METRICS = ("overall_acc", "open_acc", "closed_acc")
CLS_METRICS = ("acc", "macro_f1")
RETRIEVAL_METRICS = ("ir_r1", "ir_r5", "ir_r10", "tr_r1", "tr_r5", "tr_r10")


@dataclass(frozen=True)
class Task:
    """A fine-tuning task. Subclasses say how to build the head, the loss and the metrics."""

    name: str
    dataset: str  # a DATASETS registry name
    metric_names: tuple[str, ...]
    headline: str  # the validation metric that selects the best epoch
    mode: str = "max"  # "max" | "min": which way `headline` is better

    def build_head(self, model, train_set) -> nn.Module | None:
        """The task head on top of `model` (None: the task re-uses a model head)."""
        raise NotImplementedError

    def loss(self, model, head, batch) -> torch.Tensor:
        """Training loss of one batch."""
        raise NotImplementedError

    def evaluate(self, model, head, dataset, cfg) -> dict[str, float]:
        """The task's metrics (`metric_names`) on a whole split, without gradients."""
        raise NotImplementedError

    def better(self, value: float, best: float | None) -> bool:
        if best is None or best != best:  # nothing yet, or NaN so far
            return True
        return value > best if self.mode == "max" else value < best


def _pooled(model, batch) -> torch.Tensor:
    return model.encode(batch.images, batch.input_ids, batch.attention_mask).pooled


def _eval_batches(dataset, cfg, model):
    from m3ae.data import make_loader
    from m3ae.train.runtime import on_model_device

    loader = make_loader(dataset, cfg.finetune.eval_batch_size, train=False, cfg=cfg, seed=cfg.seed)
    return on_model_device(loader, model)


def _pooled_split(model, dataset, cfg, keep) -> torch.Tensor:
    """Pooled features [E, 2D] of a whole split, each image and question encoded once
    (m3ae.train.evaluate.SplitEncoder); `keep(batch)` sees every batch (to collect targets)."""
    from m3ae.train.evaluate import SplitEncoder

    encoder = SplitEncoder(model, chunk=cfg.finetune.eval_batch_size)
    for batch in _eval_batches(dataset, cfg, model):
        encoder.add(batch)
        keep(batch)
    return encoder.pooled()


@dataclass(frozen=True)
class VQATask(Task):
    def build_head(self, model, train_set):
        from m3ae.model.heads import VQAHead

        if not train_set.answers:
            raise ValueError(f"{self.name}: dataset {self.dataset!r} has no answer set")
        return VQAHead(2 * model.hidden_size, len(train_set.answers))

    def loss(self, model, head, batch):
        import torch.nn.functional as F

        logits = head(_pooled(model, batch))  # [B, A]
        # the paper's loss: BCE over soft scores, scaled by the number of answers
        return F.binary_cross_entropy_with_logits(logits, batch.labels) * batch.labels.shape[1]

    def evaluate(self, model, head, dataset, cfg):
        import torch

        from m3ae.train.metrics import vqa_accuracy

        targets, types = [], []
        with torch.no_grad():
            pooled = _pooled_split(model, dataset, cfg,
                                   lambda b: (targets.append(b.labels), types.append(b.answer_types)))
            return vqa_accuracy(head(pooled).float(), torch.cat(targets), torch.cat(types))


@dataclass(frozen=True)
class ClassificationTask(Task):
    def build_head(self, model, train_set):
        from m3ae.model.heads import ClassificationHead

        if train_set.num_classes < 2:
            raise ValueError(f"{self.name}: dataset {self.dataset!r} has {train_set.num_classes} classes")
        return ClassificationHead(2 * model.hidden_size, train_set.num_classes)

    def loss(self, model, head, batch):
        import torch.nn.functional as F

        return F.cross_entropy(head(_pooled(model, batch)), batch.labels)

    def evaluate(self, model, head, dataset, cfg):
        import torch

        from m3ae.train.metrics import classification_metrics

        labels = []
        with torch.no_grad():
            pooled = _pooled_split(model, dataset, cfg, lambda b: labels.append(b.labels))
            return classification_metrics(head(pooled).float(), torch.cat(labels))


@dataclass(frozen=True)
class RetrievalTask(Task):
    negatives: int = 15  # negative texts per image in training (the paper's 15), capped by the batch

    def build_head(self, model, train_set):
        return None  # the ITM head scores image-text pairs

    def loss(self, model, head, batch):
        from m3ae.train.retrieval import in_batch_rank_loss

        return in_batch_rank_loss(model, batch, self.negatives)

    def evaluate(self, model, head, dataset, cfg):
        import torch

        from m3ae.train.metrics import retrieval_recall
        from m3ae.train.retrieval import score_matrix

        with torch.no_grad():
            scores, text_image = score_matrix(model, _eval_batches(dataset, cfg, model))
            return retrieval_recall(scores, text_image)


def _register(task: Task) -> Task:
    TASKS.register(task.name)(task)
    return task


SYNTH_VQA = _register(VQATask("synth_vqa", "synth_vqa", VQA_METRICS, "overall_acc"))
VQA_RAD = _register(VQATask("vqa_rad", "vqa_rad", VQA_METRICS, "overall_acc"))
SLAKE = _register(VQATask("slake", "slake", VQA_METRICS, "overall_acc"))
MEDVQA_2019 = _register(VQATask("medvqa_2019", "medvqa_2019", VQA_METRICS, "overall_acc"))
SYNTH_CLS = _register(ClassificationTask("synth_cls", "synth_cls", CLS_METRICS, "acc"))
MELINDA = _register(ClassificationTask("melinda", "melinda", CLS_METRICS, "acc"))
SYNTH_IRTR = _register(RetrievalTask("synth_irtr", "synth_irtr", RETRIEVAL_METRICS, "ir_r1"))
ROCO = _register(RetrievalTask("roco", "roco", RETRIEVAL_METRICS, "ir_r1"))


def get_task(name: str) -> Task:
    """The registered task called `name` (unknown names list the valid ones)."""
    return TASKS.get(name)
