"""Training: pre-training, fine-tuning, evaluation and checkpoints, in plain PyTorch.

    from m3ae.train import pretrain, finetune
    pre = pretrain(cfg, out_dir / "pretrain", cache_dir)
    res = finetune(cfg, "synth_vqa", pre.checkpoint, out_dir / "synth_vqa", cache_dir)

Everything is reported through `m3ae.train.callbacks.Callback`; nothing here
knows of MLflow, Ray or Optuna. Importing this package registers the tasks.
"""

from m3ae.train.callbacks import Callback, CallbackList
from m3ae.train.checkpoint import CheckpointMismatchError
from m3ae.train.finetune import FinetuneResult, finetune
from m3ae.train.pretrain import PretrainResult, pretrain
from m3ae.train.runtime import NonFiniteLossError
from m3ae.tasks import Task, get_task

__all__ = ["Callback", "CallbackList", "CheckpointMismatchError", "FinetuneResult", "NonFiniteLossError",
           "PretrainResult", "Task", "finetune", "get_task", "pretrain"]
