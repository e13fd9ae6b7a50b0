"""The scientific bar: does M3AE pre-training help fine-tuning, and does MIM add to MLM + ITM?

Over several seeds, fine-tunes `synth_vqa` (or --task) three ways with the same
profile:
    scratch   no pre-training (random init)
    full      pre-trained with MIM + MLM + ITM
    mlm_itm   pre-trained with MLM + ITM only (model.mim.enabled=false)
and writes a markdown table (per seed, mean, std, paired differences).

    .venv/bin/python scripts/pretraining_helps.py                     # laptop, seeds 0,1,2, 2 jobs
    .venv/bin/python scripts/pretraining_helps.py --seeds 0 --jobs 1 --set finetune.epochs=5
    .venv/bin/python scripts/pretraining_helps.py --scratch-lrs 5e-4,1e-3   # scratch also gets its own lr

Two runs side by side (say, two settings with --jobs 1 each) must say
`--threads 1`: each trial otherwise takes every core, and two processes with
two threads each on a 2-core machine run a pre-training step about 4x slower.

All variants fine-tune with the profile's settings. A fine-tuning lr that suits
a pre-trained model may not suit a random one, so --scratch-lrs also
fine-tunes scratch at those learning rates and adds a row "scratch (lr tuned)":
per seed, the scratch run with the best validation accuracy (the task's first
metric), scored on test like the others. Comparing against it gives scratch
its best shot.

Each trial writes <workdir>/<variant>-s<seed>/result.json and is skipped when
that file exists, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from m3ae.train.callbacks import Callback

VARIANTS = {
    "scratch": {"pretrain.enabled": False},
    "full": {},
    "mlm_itm": {"model.mim.enabled": False},
}


def trial_config(profile_name: str, overrides: list[str], variant: str, seed: int, task: str, threads: int,
                 finetune_lr: float | None = None):
    from m3ae.config import apply_overrides, profile

    cfg = apply_overrides(profile(profile_name), overrides)
    lr = {} if finetune_lr is None else {"finetune.lr": finetune_lr}
    return apply_overrides(cfg, {**VARIANTS[variant], "seed": seed, "threads": threads, "finetune.tasks": [task],
                                 **lr})


def trial_name(variant: str, seed: int, finetune_lr: float | None = None) -> str:
    return f"{variant}-s{seed}" if finetune_lr is None else f"{variant}-lr{finetune_lr:g}-s{seed}"


class _Log(Callback):
    """One line per evaluation, so a long run shows where it is."""

    def __init__(self, name: str):
        self.name, self.start = name, time.perf_counter()

    def on_eval(self, stage, step, metrics):
        shown = ", ".join(f"{k}={v:.3g}" for k, v in metrics.items())
        print(f"  [{self.name} {stage} step {step}, {time.perf_counter() - self.start:.0f} s] {shown}", flush=True)


def run_trial(profile_name: str, overrides: list[str], variant: str, seed: int, task: str, threads: int,
              workdir: str, reuse: str | None = None, finetune_lr: float | None = None) -> dict:
    """Pre-train (unless scratch) and fine-tune one (variant, seed); cached in result.json.
    `reuse`: another run's workdir whose finished pre-training of this (variant, seed) is
    taken as is (pretrain() refuses it if its pre-training settings differ).
    `finetune_lr`: fine-tune at this lr instead of the profile's (a trial of its own)."""
    from m3ae.config import to_yaml
    from m3ae.train import finetune, pretrain

    cfg = trial_config(profile_name, overrides, variant, seed, task, threads, finetune_lr)
    trial_dir = Path(workdir) / trial_name(variant, seed, finetune_lr)
    done = trial_dir / "result.json"
    if done.is_file():  # results of earlier versions of this script do not name their lr
        return {"finetune_lr": cfg.finetune.lr, **json.loads(done.read_text())}
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "config.yaml").write_text(to_yaml(cfg))
    cache = Path(workdir) / "cache"
    checkpoint, pre_seconds, pre_metrics = None, 0.0, {}
    if cfg.pretrain.enabled:
        pre_dir = trial_dir / "pretrain"
        reused = Path(reuse or ".") / trial_name(variant, seed) / "pretrain"  # the fine-tuning lr plays no part
        if reuse and (reused / "checkpoint.pt").is_file():
            pre_dir = reused
        pre = pretrain(cfg, pre_dir, cache, [_Log(trial_dir.name)])
        checkpoint, pre_seconds, pre_metrics = pre.checkpoint, pre.seconds, pre.metrics
    fine = finetune(cfg, task, checkpoint, trial_dir / task, cache, [_Log(trial_dir.name)])
    result = {"variant": variant, "seed": seed, "task": task, "finetune_lr": cfg.finetune.lr,
              "test": fine.metrics, "val": fine.val_metrics,
              "best_epoch": fine.best_epoch, "pretrain_seconds": pre_seconds, "finetune_seconds": fine.seconds,
              "pretrain_val": pre_metrics}
    done.write_text(json.dumps(result, indent=2))
    return result


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


TUNED = "scratch (lr tuned)"


def tuned_scratch(results: list[dict], seed: int, metric: str) -> dict:
    """Of the scratch runs of a seed (the profile's lr and each --scratch-lrs one), the
    one with the best validation `metric`."""
    runs = [r for r in results if r["variant"] == "scratch" and r["seed"] == seed]
    return max(runs, key=lambda r: r["val"][metric])


def markdown(results: list[dict], metrics: list[str], seeds: list[int], header: str) -> str:
    by = {(r["variant"], r["seed"]): r for r in results if not r.get("lr_trial")}
    tuned = any(r.get("lr_trial") for r in results)
    if tuned:
        by.update({(TUNED, s): tuned_scratch(results, s, metrics[0]) for s in seeds})
    variants = [*VARIANTS, *([TUNED] if tuned else [])]
    pairs = [("full", "scratch"), *([("full", TUNED)] if tuned else []), ("full", "mlm_itm"), ("mlm_itm", "scratch")]
    lines = [header, ""]
    if tuned:
        chosen = ", ".join(f"seed {s}: {by[(TUNED, s)]['finetune_lr']:g}" for s in seeds)
        lines += [f"{TUNED}: the scratch run with the best validation {metrics[0]} per seed (fine-tuning lr "
                  f"{chosen}).", ""]
    for metric in metrics:
        lines += [f"**{metric}** (test split, %)", "",
                  "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |",
                  "|---|" + "---|" * (len(seeds) + 1)]
        for variant in variants:
            values = [by[(variant, s)]["test"][metric] for s in seeds]
            lines.append(f"| {variant} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {_mean_std(values)} |")
        for a, b in pairs:
            diffs = [by[(a, s)]["test"][metric] - by[(b, s)]["test"][metric] for s in seeds]
            lines.append(f"| {a} − {b} | " + " | ".join(f"{d:+.2f}" for d in diffs) + f" | {_mean_std(diffs)} |")
        lines.append("")
    pre = [r["pretrain_seconds"] for r in results if r["pretrain_seconds"] > 1]  # a reused checkpoint: ~0 s
    fine = [r["finetune_seconds"] for r in results]
    trained = f"pre-training {statistics.mean(pre):.0f} s (mean of {len(pre)})" if pre else "pre-training reused"
    lines.append(f"Wall time per trial: {trained}, fine-tuning {statistics.mean(fine):.0f} s (mean of {len(fine)}).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--task", default="synth_vqa")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--jobs", type=int, default=2, help="trials run side by side (one torch thread each)")
    parser.add_argument("--workdir", type=Path, default=Path("ablate-runs/pretraining_helps"))
    parser.add_argument("--reuse-pretrain", type=Path, default=None, metavar="WORKDIR",
                        help="take finished pre-trainings from an earlier run's workdir (only fine-tuning differs)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default <workdir>/results.md)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per trial (default: 1 with --jobs > 1, else all cores); "
                             "give 1 when two runs of this script share the machine")
    parser.add_argument("--scratch-lrs", default="", metavar="LR,LR",
                        help="also fine-tune scratch at these learning rates; adds a row with the best by validation")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    try:
        scratch_lrs = [float(lr) for lr in args.scratch_lrs.split(",") if lr.strip()]
    except ValueError:
        parser.error(f"--scratch-lrs: expected comma-separated learning rates, got {args.scratch_lrs!r}")
    threads = args.threads if args.threads is not None else (1 if args.jobs > 1 else 0)
    if threads < 0:
        parser.error(f"--threads: expected 0 (all cores) or more, got {threads}")
    # seed by seed (a partial run still compares the variants), pre-training trials first
    jobs = [(v, s, None) for s in seeds for v in ("full", "mlm_itm", "scratch")]
    jobs += [("scratch", s, lr) for s in seeds for lr in scratch_lrs]
    from m3ae.config import ConfigError

    try:  # a bad --set or lr fails here, before any trial starts, not as a worker's traceback
        for v, s, lr in jobs:
            trial_config(args.profile, args.overrides, v, s, args.task, threads, lr)
    except ConfigError as error:
        parser.error(f"trial {trial_name(v, s, lr)}: {error}")
    workdir = args.workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    reuse = str(args.reuse_pretrain.absolute()) if args.reuse_pretrain else None
    start, results = time.perf_counter(), []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_trial, args.profile, args.overrides, v, s, args.task, threads, str(workdir),
                               reuse, lr): (v, s, lr) for v, s, lr in jobs}
        for future in as_completed(futures):
            result = dict(future.result(), lr_trial=futures[future][2] is not None)
            results.append(result)
            print(f"{trial_name(result['variant'], result['seed'], futures[future][2]):>16}: " +
                  ", ".join(f"{k}={v:.2f}" for k, v in result["test"].items()) +
                  f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    from m3ae.train import get_task

    header = (f"### Pre-training helps? `{args.task}`, profile `{args.profile}`"
              + (f" with {' '.join(args.overrides)}" if args.overrides else "") + f", seeds {args.seeds}")
    text = markdown(results, list(get_task(args.task).metric_names), seeds, header)
    out = args.out or workdir / "results.md"
    out.write_text(text)
    print(text)
    print(f"wrote {out} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
