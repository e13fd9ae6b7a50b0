"""How training reports: a small callback interface. The platform plugs MLflow and
Ray Tune in behind it; `m3ae` itself never imports them.

Stages are named "pretrain" or the fine-tuning task's name ("synth_vqa", ...).
Metric names are bare ("mim_loss", "train_loss", "overall_acc"); whoever logs them
adds the stage prefix ("pretrain/mim_loss", "synth_vqa/overall_acc").
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping


class Callback:
    """Override what you need; every hook defaults to doing nothing."""

    def on_stage_start(self, stage: str, total_steps: int | None = None) -> None:
        """A stage begins (before its first step); `total_steps`: the optimizer steps it will take."""

    def on_step(self, stage: str, step: int, metrics: Mapping[str, float]) -> None:
        """After an optimizer step: training losses, lr, throughput."""

    def on_eval(self, stage: str, step: int, metrics: Mapping[str, float]) -> None:
        """After an evaluation on the validation split (fine-tuning: once per eval epoch)."""

    def on_artifact(self, stage: str, path: Path) -> None:
        """A file worth keeping was written (reconstruction PNG, config, metrics JSON)."""

    def on_end(self, stage: str, metrics: Mapping[str, float]) -> None:
        """The stage finished; `metrics` are its final numbers (test split for fine-tuning)."""


class CallbackList(Callback):
    """Fans every hook out to several callbacks, in order."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)

    def on_stage_start(self, stage, total_steps=None):
        for cb in self.callbacks:
            cb.on_stage_start(stage, total_steps)

    def on_step(self, stage, step, metrics):
        for cb in self.callbacks:
            cb.on_step(stage, step, metrics)

    def on_eval(self, stage, step, metrics):
        for cb in self.callbacks:
            cb.on_eval(stage, step, metrics)

    def on_artifact(self, stage, path):
        for cb in self.callbacks:
            cb.on_artifact(stage, path)

    def on_end(self, stage, metrics):
        for cb in self.callbacks:
            cb.on_end(stage, metrics)
