"""Cache keys of a config: what makes two pre-trainings, or two trials, the same.

    pretrain_key(cfg)   a hash of `pretrain_view(cfg)`: trials with equal keys share one pre-training
    trial_id(cfg)       a hash of the whole resolved config, thread counts, compile and evaluation batch size left out

Both are stable across processes and runs (`m3ae.config.config_hash`), so a study
expands to the same ids every time and a re-run skips what is done. A config that
names plugin components (`m3ae.plugins`) also hashes the plugins' versions and
files: an edited plugin is a new pre-training and a new trial.
"""

from __future__ import annotations

from typing import Any

from m3ae import plugins
from m3ae.config import Config, PerTaskConfig, config_hash, to_dict
from m3ae.data.synthmed.tasks import TASK_FIELDS as SYNTH_TASK_FIELDS
from m3ae.versions import STREAMS_VERSION, SYNTHMED_VERSION, TOKENIZER_VERSION

# data fields that pre-training never reads: the loader's workers and the fine-tuning tasks' sizes
# (the tokenizer is trained on the pre-training corpus alone)
NOT_PRETRAINING_DATA = ("num_workers", *(name for task, names in SYNTH_TASK_FIELDS.items()
                                         if task != "synth_pairs" for name in names))


# Fields added after studies were run, with the value that behaves as before they existed: left
# out of both keys at that value, so earlier trials and cached pre-trainings keep their keys.
LATER_FIELDS = {"pretrain.micro_batch_size": 0, "finetune.micro_batch_size": 0,
                "finetune.per_task": to_dict(PerTaskConfig()), "model.fusion.input_norm": True, "model.init": None,
                "model.vision.image_norm": "half", "finetune.evaluate_only": False}


def _plain(cfg: Config) -> dict[str, Any]:
    data = to_dict(cfg)
    for path, default in LATER_FIELDS.items():
        *parents, name = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        if node.get(name) == default:
            del node[name]
    return data


def pretrain_view(cfg: Config) -> dict[str, Any]:
    """Only the settings that change what pre-training produces: the key of the
    pre-train cache. Fine-tuning settings and thread counts are left out."""
    data = _plain(cfg)
    view = {"model": data["model"],
            "data": {k: v for k, v in data["data"].items() if k not in NOT_PRETRAINING_DATA},
            "pretrain": data["pretrain"], "seed": data["seed"],
            # a new data generator or tokenizer makes old cached checkpoints stale: they get a new key
            "versions": {"synthmed": SYNTHMED_VERSION, "tokenizer": TOKENIZER_VERSION,
                         "streams": STREAMS_VERSION}}
    used = plugins.used_by(view)
    if used:  # only then, so configs of built-ins keep their keys
        view["plugins"] = used
    return view


def pretrain_key(cfg: Config) -> str:
    return config_hash(pretrain_view(cfg))


def trial_id(cfg: Config) -> str:
    data = _plain(cfg)
    used = plugins.used_by(data)
    if used:
        data["plugins"] = used
    data.pop("threads")  # how fast, not what: the same trial
    data.pop("compile")
    data["data"].pop("num_workers")
    data["finetune"].pop("eval_batch_size")
    return config_hash(data)
