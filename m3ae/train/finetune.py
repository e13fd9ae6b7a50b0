"""Fine-tuning: a task head on the (pre-trained or fresh) model, trained on the
task's train split, selected by the validation headline metric, scored on test.

    result = finetune(cfg, "synth_vqa", pretrain_result.checkpoint, out_dir, cache_dir)
    result.metrics   # {"overall_acc": ..., "open_acc": ..., "closed_acc": ...} on the test split

`checkpoint=None` starts from random weights: the "no pre-training" baseline.
Both start from the same seed, so the head's initial weights are the same.
With `model.init` (and no pre-training) a released fine-tuned head that file
carries for the task starts the head instead, its classes matched to the
loader's labels by name; `finetune.evaluate_only` scores it without training.
`parallel` runs the loop data-parallel, as `pretrain` does (m3ae.train.distributed).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from m3ae.config import ConfigError, task_config
from m3ae.tasks import get_task
from m3ae.train.callbacks import CallbackList
from m3ae.train.checkpoint import load_checkpoint, load_model_weights, load_task_head, read_task_head
from m3ae.train.distributed import SINGLE, DataParallel
from m3ae.train.optim import build_optimizer
from m3ae.train.progress import Progress
from m3ae.train.runtime import autocast, seed_everything
from m3ae.train.schedule import build_scheduler
from m3ae.train.steps import StepLog, Stopwatch, optimizer_step


@dataclass
class FinetuneResult:
    metrics: dict  # test-split metrics with bare names (overall_acc, acc, ir_r1, ...)
    seconds: float  # wall time of training + evaluation
    flops: float  # training FLOPs: counted on one step x steps
    eval_seconds: float = 0.0  # of `seconds`, evaluation (validation passes and the test pass)
    val_metrics: dict | None = None  # the selected epoch's validation metrics
    best_epoch: int = 0
    model: torch.nn.Module | None = field(default=None, repr=False)  # the scored TaskModel, with keep_model=True


class TaskModel(torch.nn.Module):
    """The M3AE backbone plus the task head (None when the task re-uses a model head)."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.head = backbone, head

    def roles(self) -> dict[str, list]:
        roles = {k: list(v) for k, v in self.backbone.param_groups_by_role().items()}
        if self.head is not None:
            roles["heads"] = roles.get("heads", []) + list(self.head.parameters())
        return roles


def finetune(cfg, task: str, checkpoint: Path | None, out_dir: Path, cache_dir: Path, callbacks=(), *,
             parallel: DataParallel = SINGLE, keep_model: bool = False) -> FinetuneResult:
    """Fine-tune on `task` for `cfg.finetune.epochs` epochs (or the task's own `finetune.per_task`
    settings); returns test metrics of the best validation epoch.
    `parallel`: this process's place in a data-parallel group (default: a single process).
    `keep_model`: also return that epoch's model (analyses that score it further, in-process only).
    With `finetune.evaluate_only` nothing trains: the model as loaded is validated and tested."""
    cfg = task_config(cfg, task)  # the task's own batch, epochs, lr multipliers, sizes (finetune.per_task)
    spec, fcfg = get_task(task), cfg.finetune
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    callbacks = CallbackList(callbacks if parallel.is_main else ())
    seed_everything(cfg.seed, cfg.threads)
    start, evaluating = time.perf_counter(), Stopwatch()

    splits, net = _build(cfg, spec, checkpoint, Path(cache_dir))
    net = parallel.place(net)
    if fcfg.evaluate_only:
        fit = _validate_as_loaded(spec, net, splits["val"], cfg, callbacks, evaluating)
    else:
        fit = _fit(spec, net, splits, cfg, parallel, callbacks, evaluating)
        net.load_state_dict(fit.best_state)
    with evaluating:
        test = _evaluate(spec, net, splits["test"], cfg)
    result = FinetuneResult(metrics=test, seconds=time.perf_counter() - start, flops=fit.flops,
                            eval_seconds=evaluating.seconds, val_metrics=fit.best_val, best_epoch=fit.best_epoch,
                            model=net if keep_model else None)
    path = out_dir / "metrics.json"
    if parallel.is_main:
        _write_metrics(path, task, result, checkpoint)
    callbacks.on_artifact(task, path)
    callbacks.on_end(task, test)
    return result


@dataclass
class _Fit:
    best_val: dict  # the selected epoch's validation metrics
    best_epoch: int  # 0: the model as loaded
    flops: float  # training FLOPs
    best_state: dict | None = None  # that epoch's weights


def _fit(spec, net, splits, cfg, parallel, callbacks, evaluating) -> _Fit:
    """Train for the task's epochs, validating after each `eval_every_epochs`-th; keeps the best epoch."""
    from m3ae.data import make_loader

    task, fcfg = spec.name, cfg.finetune
    optimizer = build_optimizer(net.roles(), fcfg, net.parameters())
    loss_of = parallel.wrap(net, lambda batch: spec.loss(net.backbone, net.head, batch))  # in DDP when distributed
    loader_for = lambda epoch: make_loader(splits["train"], fcfg.batch_size, train=True, cfg=cfg,  # noqa: E731
                                           seed=cfg.seed * 100_003 + epoch)
    steps_per_epoch = len(loader_for(0))
    if steps_per_epoch == 0:
        raise ValueError(f"{task}: finetune.batch_size {fcfg.batch_size} leaves no full batch "
                         f"in {len(splits['train'])} training examples")
    scheduler = build_scheduler(optimizer, fcfg, fcfg.epochs * steps_per_epoch)

    callbacks.on_stage_start(task, fcfg.epochs * steps_per_epoch)
    parallel.seed(cfg.seed, 0)
    step, best, fit = 0, None, None
    with Progress(fcfg.epochs * steps_per_epoch, task, enabled=None if parallel.is_main else False) as bar:
        log = StepLog(task, optimizer, parallel, callbacks, bar)
        for epoch in range(1, fcfg.epochs + 1):
            for batch in loader_for(epoch):  # global batches; this process trains on its shard of each
                step += 1
                started, shard = time.perf_counter(), parallel.shard(batch)
                log.run(step, batch, lambda: _train_step(spec, loss_of, optimizer, scheduler, shard, fcfg, step),
                        lambda loss: {"train_loss": loss}, started)
            if is_eval_epoch(epoch, fcfg):
                with evaluating:
                    val = _evaluate(spec, net, splits["val"], cfg)  # every process: the same numbers
                callbacks.on_eval(task, step, {f"val_{k}": v for k, v in val.items()})
                if spec.better(val[spec.headline], best):
                    best = val[spec.headline]
                    fit = _Fit(val, epoch, 0.0, {k: v.detach().clone() for k, v in net.state_dict().items()})
    fit.flops = float(log.flops_per_step) * step
    return fit


def _validate_as_loaded(spec, net, val_set, cfg, callbacks, evaluating) -> _Fit:
    """`finetune.evaluate_only`: no optimizer, no step; the validation metrics of the model as loaded."""
    callbacks.on_stage_start(spec.name, 0)
    with evaluating:
        val = _evaluate(spec, net, val_set, cfg)
    callbacks.on_eval(spec.name, 0, {f"val_{k}": v for k, v in val.items()})
    return _Fit(val, 0, 0.0)


def _build(cfg, spec, checkpoint: Path | None, cache_dir: Path) -> tuple[dict, TaskModel]:
    """The task's train / val / test sets and the model (from `checkpoint`, or fresh) with its head."""
    from m3ae.data import build_dataset, build_tokenizer, text_vocab
    from m3ae.model import build_model

    tokenizer = build_tokenizer(cfg, cache_dir)
    # train_fraction keeps a fixed random share of the training split (the same for scratch and pre-trained)
    splits = {split: build_dataset(spec.dataset, split, cfg, tokenizer, cache_dir,
                                   fraction=cfg.finetune.train_fraction if split == "train" else 1.0,
                                   fraction_seed=cfg.seed)
              for split in ("train", "val", "test")}
    model = build_model(cfg.model, text_vocab(tokenizer))
    if checkpoint is not None:
        load_model_weights(model, load_checkpoint(checkpoint), cfg, source=str(checkpoint))
    head = spec.build_head(model, splits["train"])
    imported = head is not None and checkpoint is None and _load_imported_head(cfg, spec, head, splits["train"])
    if cfg.finetune.evaluate_only and head is not None and not imported:
        raise ConfigError(f"finetune.evaluate_only: task {spec.name} would be scored with an untrained head; "
                          f"model.init needs the head of a released {spec.name} checkpoint (ablate import-m3ae "
                          f"--task {spec.name} --data-root DIR), and pretrain.enabled=false")
    return splits, TaskModel(model, head)


def _load_imported_head(cfg, spec, head, train_set) -> bool:
    """Start `head` from the fine-tuned head `model.init` carries for this task, if it has one."""
    if cfg.model.init is None:
        return False
    saved = read_task_head(cfg.model.init, spec.name)
    if saved is not None:
        load_task_head(head, saved, train_set.label_names, f"model.init {cfg.model.init}")
    return saved is not None


def _write_metrics(path: Path, task: str, result: FinetuneResult, checkpoint: Path | None) -> None:
    path.write_text(json.dumps({"task": task, "test": result.metrics, "val": result.val_metrics,
                                "best_epoch": result.best_epoch, "seconds": result.seconds,
                                "eval_seconds": result.eval_seconds, "flops": result.flops,
                                "pretrained": str(checkpoint) if checkpoint else None}, indent=2))


def is_eval_epoch(epoch: int, fcfg) -> bool:
    """Fine-tuning validates after every `eval_every_epochs`-th epoch and after the last."""
    return epoch % fcfg.eval_every_epochs == 0 or epoch == fcfg.epochs


def _train_step(spec, loss_of, optimizer, scheduler, batch, fcfg, step: int) -> float:
    """`loss_of(batch)`: the task's loss over the backbone and head (in DDP when distributed),
    over micro-batches of `fcfg.micro_batch_size`; returns the batch's loss."""
    outs = optimizer_step(loss_of, optimizer, scheduler, batch, fcfg, spec.name, step, lambda loss: (loss, None))
    total = 0.0
    for share, loss in outs:
        total += share * loss.item()
    return total


def _evaluate(spec, net, dataset, cfg) -> dict[str, float]:
    net.eval()
    with torch.inference_mode(), autocast(cfg.finetune.precision, next(net.parameters()).device.type):
        return spec.evaluate(net.backbone, net.head, dataset, cfg)
