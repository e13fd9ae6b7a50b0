"""`ablate train`: one pre-train -> fine-tune run, no tracking server.

    ablate train --profile laptop --set model.mim.mask_ratio=0.5 --tasks synth_vqa,synth_cls
    ablate train --profile smoke --workers 2        # data-parallel: 2 DDP processes (Ray Train)
    ablate train --plugin grid_masking --set model.mim.masking=grid   # a component of your own

Writes under <workdir>/train/<run-name>/: config.yaml, pretrain/checkpoint.pt,
pretrain/reconstructions/step_<N>.png, <task>/metrics.json and metrics.json
(everything); data and tokenizer caches go to <workdir>/cache. Prints a results table.
Running the same command again resumes / re-uses the finished pre-training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ablations.paths import within


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="laptop", help="smoke | laptop | paper (default laptop)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a config value, e.g. model.mim.mask_ratio=0.5 (repeatable)")
    parser.add_argument("--tasks", default=None, help="comma-separated fine-tuning tasks (default: the profile's)")
    parser.add_argument("--run-name", default=None,
                        help="folder under <workdir>/train (default: <profile>-<trial id of the config>)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="train data-parallel on N processes (DDP on a local Ray, or RAY_ADDRESS's): each "
                             "trains on 1/N of every batch; gloo on CPUs, nccl with --gpus-per-worker (default 1)")
    parser.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                        help="import MODULE first: it registers components of your own (repeatable; looked for "
                             "on the Python path and in the current folder)")
    parser.add_argument("--gpus-per-worker", type=int, default=0, metavar="G",
                        help="GPUs each worker reserves when --workers > 1 (default 0: CPU workers)")


class _Printer:
    """Prints evaluations and stage ends as they happen (one line each)."""

    def on_stage_start(self, stage, total_steps=None):
        print(f"[{stage}] started", flush=True)

    def on_step(self, stage, step, metrics):
        pass

    def on_eval(self, stage, step, metrics):
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        print(f"[{stage}] step {step}: {shown}", flush=True)

    def on_artifact(self, stage, path):
        pass

    def on_end(self, stage, metrics):
        pass


def resolve_config(profile_name: str, overrides: list[str], tasks: str | None):
    from m3ae.config import apply_overrides, profile

    cfg = apply_overrides(profile(profile_name), overrides)
    if tasks:
        cfg = apply_overrides(cfg, {"finetune.tasks": [t.strip() for t in tasks.split(",") if t.strip()]})
    return cfg


def results_table(results: dict) -> str:
    """One line per (task, metric): test value and the selected epoch's validation value."""
    lines = [f"{'task':<14}{'metric':<14}{'test':>8}{'val':>8}"]
    for task, res in results.items():
        for name, value in res["test"].items():
            val = (res["val"] or {}).get(name, float("nan"))
            lines.append(f"{task:<14}{name:<14}{value:>8.2f}{val:>8.2f}")
    return "\n".join(lines)


def run(args) -> int:
    from ablations.cli import UsageError
    from ablations.distributed import stage_runner  # torch: imported when the verb runs, not for `ablate --help`
    from ablations.spec import check_data
    from m3ae import plugins
    from m3ae.config import to_dict, to_yaml
    from m3ae.keys import trial_id
    from m3ae.config import check_shardable

    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.gpus_per_worker < 0:
        raise UsageError(f"--gpus-per-worker must be 0 (CPU workers) or more, got {args.gpus_per_worker}")
    plugins.load(args.plugins, [Path.cwd()])  # before the config that names their components
    cfg = resolve_config(args.profile, args.overrides, args.tasks)
    check_shardable(cfg, args.workers, "--workers")
    check_data([cfg])  # real datasets under data.root, before the run directory exists
    name = args.run_name or f"{args.profile}-{trial_id(cfg)}"
    if args.workers > 1 and not args.run_name:  # a data-parallel run is not the single-process one: its own folder
        name = f"{name}-w{args.workers}"
    run_dir: Path = within(args.workdir, "train", name)  # --run-name is a folder name, never a path
    cache_dir: Path = args.workdir / "cache"
    used = {**{m.split(".")[0]: plugins.identity(m) for m in args.plugins}, **plugins.used_by(to_dict(cfg))}
    summary: dict = {"config": str(run_dir / "config.yaml"), "pretrain": None, "tasks": {},
                     **({"workers": args.workers} if args.workers > 1 else {}),
                     **({"plugins": used} if used else {})}
    resources = {"workers": args.workers, "cpu": max(1, cfg.threads), "gpu": args.gpus_per_worker}
    started = False
    if args.workers > 1:
        from ablations.runner import connect_ray

        started = connect_ray(None, args.plugins)  # RAY_ADDRESS's cluster, or a local Ray on this machine's cores
    try:
        if args.workers > 1:  # before any file is written: workers the cluster cannot hold would wait forever
            from ablations.cluster import require_resources

            require_resources(resources, keys={"cpu": "threads", "gpu": "--gpus-per-worker"})
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        print(f"ablate train: {run_dir}", flush=True)
        with stage_runner(resources, storage=args.workdir / "ray" / "train", name=run_dir.name) as stages:
            _train(cfg, stages, run_dir, cache_dir, [_Printer()], summary)
    finally:
        if started:
            import ray

            ray.shutdown()
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    print()
    print(results_table(summary["tasks"]))
    print(f"\nwrote {run_dir / 'metrics.json'}", file=sys.stderr)
    return 0


def _train(cfg, stages, run_dir: Path, cache_dir: Path, printer, summary: dict) -> None:
    """Pre-train (if enabled), then fine-tune each task, with `stages` (this process, or workers)."""
    checkpoint = None
    if cfg.pretrain.enabled:
        pre = stages.pretrain(cfg, run_dir / "pretrain", cache_dir, printer)
        checkpoint = pre.checkpoint
        summary["pretrain"] = {"checkpoint": str(pre.checkpoint), "metrics": pre.metrics,
                               "seconds": pre.seconds, "flops": pre.flops}
        print(f"[pretrain] {cfg.pretrain.steps} steps, {pre.seconds:.1f} s, {pre.flops / 1e12:.3g} TFLOPs, "
              f"checkpoint {pre.checkpoint}", flush=True)
    for task in cfg.finetune.tasks:
        res = stages.finetune(cfg, task, checkpoint, run_dir / task, cache_dir, printer)
        summary["tasks"][task] = {"test": res.metrics, "val": res.val_metrics, "best_epoch": res.best_epoch,
                                  "seconds": res.seconds, "flops": res.flops}
