"""`ablate import-m3ae`: an official M3AE checkpoint (PyTorch Lightning `.ckpt`) in this project's format.

    ablate import-m3ae downloaded/pretrained/m3ae.ckpt --out weights/m3ae.pt
    ablate train --profile paper --set pretrain.enabled=false --set model.init=weights/m3ae.pt ...

A released fine-tuned checkpoint keeps its task head with --task, scored as released:

    ablate import-m3ae m3ae_finetuned_vqa_vqa_rad_77.4.ckpt --out weights/vqa_rad.pt \
        --task vqa_rad --data-root /data/medvl
    ablate train --profile paper --tasks vqa_rad --set pretrain.enabled=false \
        --set model.init=weights/vqa_rad.pt --set finetune.evaluate_only=true ...

The key map is explicit (m3ae/train/official.py); a key it does not know is an
error that lists them, and nothing is written. The sizes are read off the
tensors; attention heads, which the shapes do not tell, come from the profile
(or --set). The command prints the --set overrides that make the profile fit
the imported weights. The head's classes are in the official code's order,
read from the dataset files under --data-root (m3ae/data/real/classes.py) and
stored with it; fine-tuning matches them to its labels by name.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="the official .ckpt (pre-trained or fine-tuned)")
    parser.add_argument("--out", type=Path, required=True, help="the checkpoint file to write")
    parser.add_argument("--profile", default="paper", help="the profile the weights will be used with (default paper)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a config value the shapes do not tell, e.g. model.fusion.num_heads=12")
    parser.add_argument("--task", default=None, metavar="TASK",
                        help="keep a fine-tuned checkpoint's head for TASK (vqa_rad, slake, medvqa_2019, melinda), "
                             "with the official class order read from --data-root")
    parser.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                        help="with --task: the folder holding the task's dataset (default: the profile's data.root)")


def run(args) -> int:
    from ablations.cli import UsageError
    from m3ae.config import apply_overrides, flatten, parse_override, profile, to_dict
    from m3ae.train.checkpoint import FORMAT, TASK_HEAD, config_differences, write_checkpoint
    from m3ae.train.official import UnmappedKeysError, convert_state, official_sizes

    state = _read_lightning(args.checkpoint)
    try:
        conversion = convert_state(state)
    except UnmappedKeysError as error:
        raise UsageError(f"{args.checkpoint}: {error}") from None
    sets = dict(parse_override(o) for o in args.overrides)
    base = profile(args.profile)
    cfg = apply_overrides(base, {**sets, **official_sizes(conversion.weights), "model.init": None})
    _check_fits(conversion.weights, cfg, args.checkpoint)
    head = _task_head(conversion, args.task, args.data_root or cfg.data.root, cfg, args.checkpoint)
    write_checkpoint(args.out, {"format": FORMAT, "config": to_dict(cfg), "step": 0, "model": conversion.weights,
                                "optimizer": None, "scheduler": None, "stage": "import-m3ae",
                                "source": str(args.checkpoint), **({TASK_HEAD: head} if head else {})})
    print(f"wrote {args.out}: {len(conversion.weights)} tensors from {args.checkpoint}")
    if head:
        print(f"  with its {conversion.head_name} for task {args.task}: {len(head['classes'])} classes in the official "
              f"order; score it as released with --tasks {args.task} --set finetune.evaluate_only=true")
    elif conversion.head:
        print(f"  not imported ({len(conversion.head)} keys, e.g. {conversion.head_name}.0.weight): the fine-tuned "
              "task head; --task TASK --data-root DIR keeps it, with the official class order")
    for reason in sorted(set(conversion.ignored.values())):
        keys = [k for k, why in conversion.ignored.items() if why == reason]
        print(f"  not imported ({len(keys)} keys, e.g. {keys[0]}): {reason}")
    needed = [d.split(":")[0] for d in config_differences(to_dict(cfg), base) if not d.startswith("model.init")]
    if cfg.data.vocab_size != base.data.vocab_size:
        needed.append("data.vocab_size")
    flat = flatten(cfg)
    print(f"use it with --profile {args.profile}" + "".join(f" --set {p}={_yaml(flat[p])}" for p in needed)
          + f" --set model.init={args.out}")
    print(f"  and the tokenizer it was trained with: --set data.tokenizer=DIR (RoBERTa's, {cfg.data.vocab_size} tokens)")
    return 0


def _read_lightning(path: Path) -> dict:
    """The checkpoint's state_dict, loaded with weights_only=True (tensors and plain values only)."""
    import pickle

    import torch

    from ablations.cli import UsageError

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise UsageError(f"{path}: not a checkpoint that loads with weights_only=True ({error})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UsageError(f"{path}: expected a PyTorch Lightning checkpoint with a 'state_dict' mapping")
    return ckpt["state_dict"]


def _check_fits(weights: dict, cfg, source: Path) -> None:
    """Build the model the config describes (shapes only, on the meta device) and compare."""
    import torch

    from ablations.cli import UsageError
    from m3ae.batch import TextVocab
    from m3ae.model import build_model
    from m3ae.train.checkpoint import PRETRAINING_HEADS

    model_cfg = dataclasses.replace(cfg.model, vision=dataclasses.replace(cfg.model.vision, weights=None),
                                    text=dataclasses.replace(cfg.model.text, pretrained=None))
    size = cfg.data.vocab_size  # RoBERTa's ids: <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> last
    vocab = TextVocab(size=size, pad_id=1, mask_id=size - 1, cls_id=0, sep_id=2, special_ids=(0, 1, 2, 3, size - 1))
    with torch.device("meta"):
        own = build_model(model_cfg, vocab).state_dict()
    missing = sorted(k for k in own if k not in weights and not k.startswith(PRETRAINING_HEADS))
    unexpected = sorted(set(weights) - set(own))
    reshaped = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    problems = [f"{what}: {names[:6]}{' ...' if len(names) > 6 else ''}"
                for what, names in (("missing", missing), ("unexpected", unexpected), ("shape differs", reshaped))
                if names]
    if problems:
        raise UsageError(f"{source}: the converted weights do not fit the model the config describes "
                         f"({'; '.join(problems)}); heads and other sizes the shapes do not tell come from "
                         "--profile / --set")


def _task_head(conversion, task_name: str | None, root, cfg, source: Path) -> dict | None:
    """The fine-tuned head with the class order it was trained on ({"task", "classes", "weights"}),
    None without --task, or a UsageError saying why it does not fit."""
    import torch

    from ablations.cli import UsageError
    from m3ae.data.real.classes import official_classes
    from m3ae.model.heads import ClassificationHead, VQAHead
    from m3ae.tasks import ClassificationTask, VQATask, get_task

    if task_name is None:
        return None
    task = get_task(task_name)
    kinds = {VQATask: ("vqa_head", VQAHead), ClassificationTask: ("cls_head", ClassificationHead)}
    if type(task) not in kinds:
        raise UsageError(f"--task {task_name}: only VQA and classification tasks have a head to keep")
    name, head_class = kinds[type(task)]
    if conversion.head_name != name:
        raise UsageError(f"--task {task_name} needs a {name}; {source} has "
                         f"{conversion.head_name or 'no task head (a pre-trained checkpoint?)'}")
    output = conversion.head.get(head_class.OUTPUT + ".weight")
    rows = 0 if output is None else output.shape[0]
    with torch.device("meta"):
        own = head_class(2 * cfg.model.fusion.hidden_size, max(rows, 1)).state_dict()
    if {k: v.shape for k, v in own.items()} != {k: v.shape for k, v in conversion.head.items()}:
        raise UsageError(f"{source}: its {name} does not have the layers of {head_class.__name__}")
    if not root:
        raise UsageError(f"--task {task_name}: pass --data-root DIR, the folder holding {task.dataset}/ (the head's "
                         "class order is read from the dataset files)")
    classes = official_classes(task.dataset, Path(root))
    if rows != len(classes):
        raise UsageError(f"{source}: its {name} has {rows} classes, and the official order of {task.dataset} under "
                         f"{root} has {len(classes)}: not the dataset files the head was trained on, or the head of "
                         "another task")
    return {"task": task_name, "classes": classes, "weights": conversion.head}


def _yaml(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
