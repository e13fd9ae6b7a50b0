"""Fine-tuning: a task head on the (pre-trained or fresh) model, trained on the
task's train split, selected by the validation headline metric, scored on test.

    result = finetune(cfg, "synth_vqa", pretrain_result.checkpoint, out_dir, cache_dir)
    result.metrics   # {"overall_acc": ..., "open_acc": ..., "closed_acc": ...} on the test split

`checkpoint=None` starts from random weights: the "no pre-training" baseline.
Both start from the same seed, so the head's initial weights are the same.
`parallel` runs the loop data-parallel, as `pretrain` does (m3ae.train.distributed).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from m3ae.config import task_config
from m3ae.train.accumulate import accumulation
from m3ae.train.callbacks import CallbackList
from m3ae.train.checkpoint import load_checkpoint, load_model_weights
from m3ae.train.distributed import SINGLE, DataParallel
from m3ae.train.flops import count_flops
from m3ae.train.optim import build_optimizer, clip_gradients
from m3ae.train.progress import Progress
from m3ae.train.runtime import autocast, check_finite, seed_everything
from m3ae.train.schedule import build_scheduler
from m3ae.tasks import get_task


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
    `keep_model`: also return that epoch's model (analyses that score it further, in-process only)."""
    from m3ae.data import build_dataset, build_tokenizer, make_loader, text_vocab
    from m3ae.model import build_model

    cfg = task_config(cfg, task)  # the task's own batch, epochs, lr multipliers, sizes (finetune.per_task)
    spec, fcfg = get_task(task), cfg.finetune
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    callbacks = CallbackList(callbacks if parallel.is_main else ())
    seed_everything(cfg.seed, cfg.threads)
    start = time.perf_counter()

    tokenizer = build_tokenizer(cfg, cache_dir)
    # train_fraction keeps a fixed random share of the training split (the same for scratch and pre-trained)
    splits = {split: build_dataset(spec.dataset, split, cfg, tokenizer, cache_dir,
                                   fraction=fcfg.train_fraction if split == "train" else 1.0, fraction_seed=cfg.seed)
              for split in ("train", "val", "test")}
    model = build_model(cfg.model, text_vocab(tokenizer))
    if checkpoint is not None:
        load_model_weights(model, load_checkpoint(checkpoint), cfg, source=str(checkpoint))
    net = parallel.place(TaskModel(model, spec.build_head(model, splits["train"])))
    optimizer = build_optimizer(net.roles(), fcfg, net.parameters())
    loss_of = parallel.wrap(net, lambda batch: spec.loss(net.backbone, net.head, batch))  # in DDP when distributed

    train_set = splits["train"]
    loader_for = lambda epoch: make_loader(train_set, fcfg.batch_size, train=True, cfg=cfg,  # noqa: E731
                                           seed=cfg.seed * 100_003 + epoch)
    steps_per_epoch = len(loader_for(0))
    if steps_per_epoch == 0:
        raise ValueError(f"{task}: finetune.batch_size {fcfg.batch_size} leaves no full batch "
                         f"in {len(train_set)} training examples")
    scheduler = build_scheduler(optimizer, fcfg, fcfg.epochs * steps_per_epoch)

    callbacks.on_stage_start(task, fcfg.epochs * steps_per_epoch)
    parallel.seed(cfg.seed, 0)
    step, flops_per_step = 0, 0
    best, best_state, best_val, best_epoch = None, None, None, 0
    eval_seconds = 0.0
    with Progress(fcfg.epochs * steps_per_epoch, task, enabled=None if parallel.is_main else False) as bar:
        for epoch in range(1, fcfg.epochs + 1):
            for batch in loader_for(epoch):  # global batches; this process trains on its shard of each
                step += 1
                lr = optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["lr_mult"]
                tick = time.perf_counter()
                shard = parallel.shard(batch)
                train_step = lambda: _train_step(spec, loss_of, optimizer, scheduler, shard, fcfg, step)  # noqa: E731
                if not flops_per_step:
                    loss, flops_per_step = count_flops(train_step)
                    flops_per_step *= parallel.world_size
                else:
                    loss = train_step()
                metrics = parallel.mean({"train_loss": loss, "lr": lr,
                                         "samples_per_s": len(batch) / (time.perf_counter() - tick)})
                callbacks.on_step(task, step, metrics)
                bar.update(1, loss=loss)
            if is_eval_epoch(epoch, fcfg):
                eval_start = time.perf_counter()
                val = _evaluate(spec, net, splits["val"], cfg)  # every process: the same numbers
                eval_seconds += time.perf_counter() - eval_start
                callbacks.on_eval(task, step, {f"val_{k}": v for k, v in val.items()})
                if spec.better(val[spec.headline], best):
                    best, best_val, best_epoch = val[spec.headline], val, epoch
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    eval_start = time.perf_counter()
    test = _evaluate(spec, net, splits["test"], cfg)
    eval_seconds += time.perf_counter() - eval_start
    seconds = time.perf_counter() - start
    result = FinetuneResult(metrics=test, seconds=seconds, flops=float(flops_per_step) * step,
                            eval_seconds=eval_seconds,
                            val_metrics=best_val, best_epoch=best_epoch, model=net if keep_model else None)
    path = out_dir / "metrics.json"
    if parallel.is_main:
        path.write_text(json.dumps({"task": task, "test": test, "val": best_val, "best_epoch": best_epoch,
                                    "seconds": seconds, "eval_seconds": eval_seconds, "flops": result.flops,
                                    "pretrained": str(checkpoint) if checkpoint else None}, indent=2))
    callbacks.on_artifact(task, path)
    callbacks.on_end(task, test)
    return result


def is_eval_epoch(epoch: int, fcfg) -> bool:
    """Fine-tuning validates after every `eval_every_epochs`-th epoch and after the last."""
    return epoch % fcfg.eval_every_epochs == 0 or epoch == fcfg.epochs


def _train_step(spec, loss_of, optimizer, scheduler, batch, fcfg, step: int) -> float:
    """`loss_of(batch)`: the task's loss over the backbone and head (in DDP when distributed),
    over micro-batches of `fcfg.micro_batch_size`; returns the batch's loss."""
    loss_of.train()
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for part, share, sync in accumulation(loss_of, batch, fcfg.micro_batch_size):  # m3ae.train.accumulate
        with sync:
            with autocast(fcfg.precision, part.images.device.type):
                loss = loss_of(part)
            check_finite(spec.name, step, loss)
            (loss if share == 1 else loss * share).backward()
        total += share * loss.item()
    clip_gradients(optimizer, fcfg.grad_clip)
    optimizer.step()
    scheduler.step()
    return total


def _evaluate(spec, net, dataset, cfg) -> dict[str, float]:
    net.eval()
    with torch.inference_mode(), autocast(cfg.finetune.precision, next(net.parameters()).device.type):
        return spec.evaluate(net.backbone, net.head, dataset, cfg)
