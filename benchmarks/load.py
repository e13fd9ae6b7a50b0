"""Load test of the platform: a study of N smoke trials (default 200) with C side by side,
against the same training run bare.

    .venv/bin/python benchmarks/load.py                          # 200 trials, 2 at a time
    .venv/bin/python benchmarks/load.py --trials 40 --concurrent 2 --bare-sample 6
    .venv/bin/python benchmarks/load.py --laptop measure         # time a real laptop trial (minutes)

The study varies only the seed, so every trial pre-trains its own model (the seed is
part of the pre-train key): the platform and the bare loop do the same training, and
every trial goes through the pre-train cache (lock, checksum, seal) once.

  bare       `m3ae.train.pretrain` + `finetune` called directly for a sample of the same
             configs, C at a time in C plain worker processes (one torch thread each, as
             a Ray trial with 1 CPU gets), so both sides share the cores the same way;
             the data cache is warm for both sides.
  platform   `ablate run` (Ray Tune on a local Ray + MLflow sqlite + the pre-train cache).
             Its cost per trial is the slot time, wall x C / N: what a trial holds a
             worker slot for, the study's fixed costs (Ray start, the dashboard at the
             end) included. Overhead = slot time - bare time, split with MLflow's
             timestamps into the fixed costs (wall - first trial start to last trial end),
             Ray around each trial, and MLflow + cache inside it (run duration - the
             training seconds the trainer measured). The bare sample is small and noisy
             on a shared machine, so an upper bound that needs no bare run is printed
             too: slot time - the training seconds measured inside the platform (it also
             counts model building and data loading, which the bare run does as well).

The overhead is printed against a laptop-profile trial's time: by default the
`ablate estimate` probe (FLOP-counted step times x steps; it leaves out evaluation
and data loading, so it underestimates the trial and overstates the ratio), or with
`--laptop measure` one real laptop trial run bare. On a shared machine, run it on an
idle one: other processes inflate both sides unevenly.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STUDY = """\
name: {name}
profile: smoke
seeds: {seeds}
max_trials: {max_trials}
data: {{pretrain: synth_pairs}}
tasks: [synth_vqa]
metric: {{name: synth_vqa/overall_acc, mode: max}}
resources: {{cpu: 1}}
"""


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) if Path(path).exists() else 0


def bare_trial(cfg, out: Path, data_cache: Path) -> tuple[float, float]:
    """(seconds in all, seconds the trainer measured) of pre-train + fine-tune of every task,
    called directly (no Ray, MLflow or cache)."""
    from m3ae.train import finetune, pretrain

    start, training, checkpoint = time.perf_counter(), 0.0, None
    if cfg.pretrain.enabled:
        result = pretrain(cfg, out / "pretrain", data_cache)
        checkpoint, training = result.checkpoint, result.seconds
    for task in cfg.finetune.tasks:
        training += finetune(cfg, task, checkpoint, out / task, data_cache).seconds
    return time.perf_counter() - start, training


def bare_worker(config: dict, out: str, data_cache: str) -> tuple[float, float]:
    """`bare_trial` in a worker process (one torch thread)."""
    import torch

    from m3ae.config import from_dict

    torch.set_num_threads(1)
    return bare_trial(from_dict(config), Path(out), Path(data_cache))


def bare_concurrent(trials, concurrent: int, folder: Path, data_cache: Path) -> list[tuple[float, float]]:
    """`bare_trial`'s seconds for each of `trials`, `concurrent` at a time; each worker warms up
    (imports, data cache) on an untimed trial first."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from m3ae.config import to_dict

    args = [(to_dict(t.config), str(folder / t.trial_id), str(data_cache)) for t in trials]
    with ProcessPoolExecutor(concurrent, mp_context=multiprocessing.get_context("spawn")) as pool:
        bare_worker(args[0][0], str(folder / "warm-driver"), str(data_cache))  # builds the data cache once
        list(pool.map(bare_worker, *zip(*[(args[0][0], str(folder / f"warm{i}"), str(data_cache))
                                          for i in range(concurrent)])))
        return list(pool.map(bare_worker, *zip(*args)))


def laptop_seconds(how: str, workdir: Path) -> tuple[float, str]:
    """A laptop-profile trial's time on this machine (synth_vqa), and how it was obtained."""
    import torch

    from ablations.estimate import estimate_study
    from ablations.spec import parse_spec
    from ablations.study import expand

    text = STUDY.format(name="laptop_probe", seeds=[0], max_trials=1)
    spec = parse_spec(text.replace("profile: smoke", "profile: laptop"))
    torch.set_num_threads(1)
    if how == "measure":
        (trial,) = expand(spec)
        seconds, _ = bare_trial(trial.config, workdir / "laptop", workdir / "cache" / "data")
        return seconds, "one laptop trial run bare (1 thread)"
    est = estimate_study(spec, progress=lambda _: None)
    return est.seconds, "`ablate estimate` probe (1 thread; no evaluation or data loading)"


@dataclass
class Platform:
    """The study run through `ablate run`, as its wall clock and MLflow's trial runs tell it."""

    trials: int
    finished: int
    wall: float  # the whole study
    span: float  # first trial start to last trial end: the wall time without the fixed costs
    run_mean: float  # a trial run's duration
    train_mean: float  # of it, the training seconds the trainer measured


def time_bare(sample, concurrent: int, workdir: Path, data_cache: Path, when: str) -> list[tuple[float, float]]:
    """`bare_concurrent` over the sample in a fresh folder, its means printed."""
    times = bare_concurrent(sample, concurrent, Path(tempfile.mkdtemp(prefix="bare-", dir=workdir)), data_cache)
    print(f"bare ({when}): {len(times)} trials, {concurrent} at a time, "
          f"{statistics.fmean(t for t, _ in times):.2f} s each, of which the trainer measured "
          f"{statistics.fmean(t for _, t in times):.2f} s", flush=True)
    return times


def run_platform(spec, trials, text: str, workdir: Path, concurrent: int) -> Platform:
    """The study on Ray Tune + MLflow + the pre-train cache, and the times its runs recorded."""
    from ablations import tracking
    from ablations.runner import run_study

    uri = tracking.default_tracking_uri(workdir)
    start = time.perf_counter()
    outcome = run_study(spec, trials, text, workdir=workdir, tracking_uri=uri, max_concurrent=concurrent)
    wall = time.perf_counter() - start
    if outcome.finished != len(trials):
        print(f"only {outcome.finished}/{len(trials)} trials finished: numbers below are not comparable")
    runs = tracking.Tracker(uri).runs(outcome.experiment_id, f"tags.`{tracking.KIND}` = 'trial'")
    durations = [(r.info.end_time - r.info.start_time) / 1000 for r in runs if r.info.end_time]
    span = (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1000
    training = [r.data.metrics.get("cost/pretrain_seconds", 0) + r.data.metrics.get("cost/finetune_seconds", 0)
                for r in runs]
    return Platform(len(trials), outcome.finished, wall, span, statistics.fmean(durations),
                    statistics.fmean(training))


def report(platform: Platform, bare: list[tuple[float, float]], sample: int, concurrent: int, laptop: float,
           how: str, workdir: Path) -> str:
    """The overhead per trial, split into where it goes, against a laptop trial."""
    n, wall = platform.trials, platform.wall
    bare_mean, bare_train = statistics.fmean(t for t, _ in bare), statistics.fmean(t for _, t in bare)
    fixed = wall - platform.span  # Ray's start, the first workers' imports, the summary and the dashboard
    slot = wall * concurrent / n
    steady = platform.span * concurrent / n  # the slot time without the fixed costs
    overhead = slot - bare_mean
    # the same without the bare sample (noisy on a shared machine): everything in the slot that is
    # not the trainer's own measured loop; it also counts model building and data loading
    upper = slot - platform.train_mean
    db, artifacts = workdir / "mlflow.db", workdir / "artifacts"
    store = folder_bytes(artifacts) + (db.stat().st_size if db.exists() else 0)
    return "\n".join([
        "",
        f"Load test: {n} smoke trials, {concurrent} concurrent, {os.cpu_count()} cores "
        f"(load average {os.getloadavg()[0]:.1f})",
        f"  study wall time             {wall:8.1f} s   ({platform.finished} finished)",
        f"  throughput                  {n / wall * 60:8.1f} trials/min",
        f"  slot time per trial         {slot:8.2f} s   (wall x {concurrent} / {n})",
        f"  bare time per trial         {bare_mean:8.2f} s   (pretrain + finetune called directly, "
        f"{sample} sampled, run before and after, {concurrent} at a time)",
        f"  platform overhead per trial {overhead:8.2f} s   ({overhead / bare_mean:+.0%} of the smoke trial)",
        f"    the study's fixed costs, shared (Ray start, summary, dashboard) "
        f"{fixed * concurrent / n:6.2f} s"
        f"   ({fixed:.0f} s in all)",
        f"    around each trial (Ray, steady slot time - run duration)        {steady - platform.run_mean:6.2f} s",
        f"    in the trial (MLflow + cache, run duration - training seconds) "
        f"{platform.run_mean - platform.train_mean:6.2f} s",
        f"    training seconds the trainer measured inside the platform       {platform.train_mean:6.2f} s "
        f"(bare: {bare_train:.2f} s of {bare_mean:.2f} s)",
        f"  MLflow store                {store / 1e6:8.1f} MB   (mlflow.db {db.stat().st_size / 1e6:.1f} MB + "
        f"artifacts {folder_bytes(artifacts) / 1e6:.1f} MB; {store / n / 1e3:.0f} kB per trial)",
        f"  laptop-profile trial        {laptop:8.1f} s   ({how})",
        f"  overhead / laptop trial     {overhead / laptop:8.2%}   (slot - bare)",
        f"    upper bound               {upper / laptop:8.2%}   (slot - training seconds = {upper:.2f} s; "
        f"goal <= 3%: {'met' if max(upper, overhead) / laptop <= 0.03 else 'NOT met'})",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="smoke trials in the study (default 200)")
    parser.add_argument("--concurrent", type=int, default=2, choices=(2, 3, 4), help="trials side by side (default 2)")
    parser.add_argument("--bare-sample", type=int, default=8, help="configs run bare (default 8)")
    parser.add_argument("--laptop", choices=("estimate", "measure"), default="estimate",
                        help="how to get a laptop trial's time (default: the estimate probe)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()

    import torch  # noqa: F401 - imported before anything is timed

    from ablations.spec import parse_spec
    from ablations.study import expand

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="ablate-load-"))).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    text = STUDY.format(name=f"load_{args.trials}", seeds=list(range(args.trials)), max_trials=max(args.trials, 1))
    spec = parse_spec(text)
    trials = expand(spec)
    data_cache = workdir / "cache" / "data"
    print(f"load test: {len(trials)} smoke trials, {args.concurrent} at a time, work directory {workdir}", flush=True)

    # bare: warm the data cache (synthmed, tokenizer) untimed, then time a sample, before and
    # after the platform (the machine's load drifts; the mean of both is used)
    sample = random.Random(0).sample(trials, min(args.bare_sample, len(trials)))
    bare = time_bare(sample, args.concurrent, workdir, data_cache, "before")
    platform = run_platform(spec, trials, text, workdir, args.concurrent)
    bare += time_bare(sample, args.concurrent, workdir, data_cache, "after")
    laptop, how = laptop_seconds(args.laptop, workdir)
    print(report(platform, bare, len(sample), args.concurrent, laptop, how, workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
