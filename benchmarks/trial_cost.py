"""Cost of one trial (pre-train -> fine-tune), split into its parts, in seconds, as shares and in
reference steps: the time of one transformers ViTMAEForPreTraining training step of a fixed size
(image 48, patch 8, width 96, depth 3, decoder 64 x 1, batch 32, mask 0.75), measured in the same
process before and after the trial, so numbers from different machines can be compared.

    .venv/bin/python benchmarks/trial_cost.py                          # the laptop profile, 1 thread
    .venv/bin/python benchmarks/trial_cost.py --set finetune.epochs=20 --out /tmp/cost.json

Parts: data set-up (synthmed and tokenizer caches: built once per data settings, shared by every
trial of a study; `cold` when this call built them), pre-training steps, pre-training evaluation
(validation losses, pictures, checkpoints), fine-tuning (set-up and training steps) and fine-tuning
evaluation (validation passes and the test pass). Also the pre-training loop's model FLOP
utilisation against the dense fp32 matmul peak measured in the same process. No Ray and no MLflow:
their overhead per trial is benchmarks/load.py's subject.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from m3ae.config import apply_overrides, profile
from m3ae.train.flops import matmul_peak_flops

from train_step import time_steps, training_step, vitmae  # benchmarks/ is the script's folder

# the reference step's size: fixed here, not taken from a profile, so that profiles may change
REFERENCE = {"model.vision.image_size": 48, "model.vision.patch_size": 8, "model.vision.width": 96,
             "model.vision.depth": 3, "model.vision.num_heads": 3, "model.mim.decoder_width": 64,
             "model.mim.decoder_depth": 1, "model.mim.decoder_heads": 2, "model.mim.mask_ratio": 0.75,
             "model.mim.norm_pix_loss": True}
REFERENCE_BATCH = 32


def reference_step_seconds(repeats: int = 20) -> float:
    """Median seconds of one ViTMAEForPreTraining training step (AdamW) at the REFERENCE size."""
    cfg = apply_overrides(profile("smoke"), REFERENCE)
    torch.manual_seed(0)
    model = vitmae(cfg).train()
    images = torch.randn(REFERENCE_BATCH, 3, 48, 48)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return time_steps(training_step(model, optimizer, lambda: model(pixel_values=images).loss), repeats)


def set_up_data(cfg, cache_dir: Path) -> tuple[float, bool]:
    """Build (or load) the tokenizer and every split the trial reads; (seconds, built anything)."""
    from m3ae.data import build_dataset, build_tokenizer
    from m3ae.train import get_task

    before = set(cache_dir.rglob("*")) if cache_dir.exists() else set()
    start = time.perf_counter()
    tokenizer = build_tokenizer(cfg, cache_dir)
    build_dataset(cfg.data.pretrain, "train", cfg, tokenizer, cache_dir)
    for task in cfg.finetune.tasks:
        for split in ("train", "val", "test"):
            build_dataset(get_task(task).dataset, split, cfg, tokenizer, cache_dir)
    return time.perf_counter() - start, set(cache_dir.rglob("*")) != before


def measure(cfg, workdir: Path) -> dict:
    from m3ae.train import finetune, pretrain

    cache = workdir / "cache"
    setup_s, cold = set_up_data(cfg, cache)
    parts = {"data set-up": setup_s}
    flops_per_s = None
    checkpoint = None
    if cfg.pretrain.enabled:
        pre = pretrain(cfg, workdir / "trial" / "pretrain", cache)
        pre_eval = getattr(pre, "eval_seconds", 0.0)  # (older code did not split it out)
        parts["pre-training steps"] = pre.seconds - pre_eval
        parts["pre-training evaluation"] = pre_eval
        flops_per_s = pre.flops / parts["pre-training steps"]
        checkpoint = pre.checkpoint
    parts["fine-tuning"] = parts["fine-tuning evaluation"] = 0.0
    metrics = {}
    for task in cfg.finetune.tasks:
        res = finetune(cfg, task, checkpoint, workdir / "trial" / task, cache)
        eval_seconds = getattr(res, "eval_seconds", 0.0)
        parts["fine-tuning"] += res.seconds - eval_seconds
        parts["fine-tuning evaluation"] += eval_seconds
        metrics[task] = res.metrics
    return {"parts": parts, "cold": cold, "pretrain_flops_per_s": flops_per_s, "metrics": metrics}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="caches and the trial's files (default: a temporary folder, so data set-up is cold)")
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = apply_overrides(profile(args.profile), [f"threads={args.threads}", *args.overrides])
    peak = matmul_peak_flops()
    reference_before = reference_step_seconds()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(cfg, args.workdir or Path(tmp))
    reference = statistics.mean([reference_before, reference_step_seconds()])

    parts = result["parts"]
    total = sum(parts.values())
    trial = total - parts["data set-up"]  # what each further trial of a study pays
    print(f"profile {args.profile} {' '.join(args.overrides)}; threads {args.threads}; "
          f"fp32 matmul peak {peak / 1e9:.0f} GFLOP/s; reference step {reference * 1e3:.1f} ms")
    print(f"{'part':<26}{'seconds':>9}{'share':>8}{'ref. steps':>12}")
    for name, seconds in parts.items():
        print(f"{name:<26}{seconds:>9.1f}{100 * seconds / total:>7.1f}%{seconds / reference:>12.0f}")
    print(f"{'trial (without set-up)':<26}{trial:>9.1f}{100 * trial / total:>7.1f}%{trial / reference:>12.0f}")
    print(f"data set-up was {'cold (caches built)' if result['cold'] else 'warm (caches loaded)'}")
    if result["pretrain_flops_per_s"]:
        flops_s = result["pretrain_flops_per_s"]
        print(f"pre-training loop: {flops_s / 1e9:.1f} GFLOP/s, MFU {100 * flops_s / peak:.1f}%")
    for task, metrics in result["metrics"].items():
        print(f"{task}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    if args.out:
        args.out.write_text(json.dumps({**result, "overrides": args.overrides, "threads": args.threads,
                                        "peak_flops": peak, "reference_step_seconds": reference,
                                        "trial_seconds": trial, "trial_reference_steps": trial / reference},
                                       indent=2))


if __name__ == "__main__":
    main()
