"""How long must fine-tuning run, and how often must it validate? Fine-tunes synth_vqa from given
starting points (a pre-training checkpoint, or scratch) for each number of epochs, validating
after every epoch and, for this measurement only, scoring the test split after every epoch too.
From one run it reports what each validation cadence k (validate every k epochs and after the
last, `finetune.eval_every_epochs`) would have selected: the epoch, its validation and test
accuracy, and how far that test accuracy is from the every-epoch selection (the noise a cadence
adds). Across runs it reports each starting point's best validation accuracy per length
(convergence), and the time of training and of one validation pass.

It looks at each starting point on its own, never at the difference between them: that is how
the fine-tuning budget is chosen without looking at the effect it must keep
(scripts/pretraining_helps.py then checks that).

    .venv/bin/python benchmarks/finetune_budget.py --start scratch --start full=/path/checkpoint.pt \
        --epochs 15,20,30 --workdir /tmp/ft --jobs 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

CADENCES = (1, 2, 3, 4, 5, 10)


def run(args: tuple[str, str | None, int, list[str], str, int]) -> dict:
    """One fine-tuning run in this process; per-epoch validation and test accuracy."""
    name, checkpoint, epochs, overrides, workdir, threads = args
    import importlib

    import torch

    from m3ae.config import apply_overrides, profile
    from m3ae.data import build_dataset, build_tokenizer
    from m3ae.train import get_task

    finetune_module = importlib.import_module("m3ae.train.finetune")  # the module: m3ae.train.finetune is the function
    torch.set_num_threads(threads)
    cfg = apply_overrides(profile("laptop"), [f"threads={threads}", f"finetune.epochs={epochs}",
                                              "finetune.eval_every_epochs=1", *overrides])
    cache = Path(workdir) / "cache"
    spec = get_task("synth_vqa")
    test_set = build_dataset(spec.dataset, "test", cfg, build_tokenizer(cfg, cache), cache)

    # Instrument the validation pass: after each one, also score the test split with the same
    # weights (the platform never does: test is scored once, on the selected epoch).
    history: list[dict] = []
    evaluate = finetune_module._evaluate

    def evaluate_and_test(spec_, net, dataset, cfg_):
        tick = time.perf_counter()
        metrics = evaluate(spec_, net, dataset, cfg_)
        seconds = time.perf_counter() - tick
        if dataset is not test_set and len(history) < epochs:
            history.append({"epoch": len(history) + 1, "val": metrics[spec.headline],
                            "test": evaluate(spec_, net, test_set, cfg_)[spec.headline], "val_seconds": seconds})
        return metrics

    finetune_module._evaluate = evaluate_and_test
    try:
        result = finetune_module.finetune(cfg, "synth_vqa", checkpoint, Path(workdir) / f"{name}-e{epochs}", cache)
    finally:
        finetune_module._evaluate = evaluate
    return {"start": name, "epochs": epochs, "overrides": overrides, "history": history,
            "seconds": result.seconds, "eval_seconds": result.eval_seconds, "test": result.metrics[spec.headline]}


def select(history: list[dict], every: int) -> dict:
    """The epoch a cadence would select: the best validation among epochs k, 2k, ... and the last."""
    last = len(history)
    seen = [h for h in history if h["epoch"] % every == 0 or h["epoch"] == last]
    return max(seen, key=lambda h: h["val"])  # the first of equals, as fine-tuning's strict `better`


def summarise(row: dict) -> list[str]:
    history = row["history"]
    every_epoch = select(history, 1)
    val_pass = sum(h["val_seconds"] for h in history) / len(history)
    lines = [f"{row['start']}, {row['epochs']} epochs: training {row['seconds'] - row['eval_seconds']:.0f} s, "
             f"one validation pass {val_pass:.1f} s; last epoch val {history[-1]['val']:.2f} "
             f"test {history[-1]['test']:.2f}"]
    for every in CADENCES:
        if every > len(history):
            continue
        chosen = select(history, every)
        lines.append(f"  every {every:>2}: {len(history) // every + (len(history) % every != 0):>2} "
                     f"passes, epoch {chosen['epoch']:>2}, val {chosen['val']:.2f}, test {chosen['test']:.2f} "
                     f"({chosen['test'] - every_epoch['test']:+.2f} vs every epoch)")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", action="append", required=True, metavar="NAME[=CHECKPOINT]",
                        help="a starting point: scratch, or NAME=path to a pre-training checkpoint (repeatable)")
    parser.add_argument("--epochs", default="15,20,30", help="comma-separated fine-tuning lengths")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--workdir", type=Path, required=True,
                        help="caches (a laptop cache may be linked in as cache/), runs and results.json")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (one thread each)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    starts = [(s.partition("=")[0], s.partition("=")[2] or None) for s in args.start]
    jobs = [(name, checkpoint, int(e), args.overrides, str(args.workdir), args.threads)
            for e in args.epochs.split(",") for name, checkpoint in starts]
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for row in pool.imap(run, jobs):
            rows.append(row)
            print("\n".join(summarise(row)), flush=True)
    (args.workdir / "results.json").write_text(json.dumps(rows, indent=2))
    print("\nbest validation accuracy (its epoch) by length:")
    for name, _ in starts:
        runs = [r for r in rows if r["start"] == name]
        print(f"  {name}: " + ", ".join(f"{r['epochs']} epochs {select(r['history'], 1)['val']:.2f} "
                                       f"({select(r['history'], 1)['epoch']})" for r in runs))


if __name__ == "__main__":
    main()
