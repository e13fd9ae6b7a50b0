"""How much pre-training does a budget buy? Each candidate budget (steps, batch, lr) pre-trains the
laptop model from the same seed; the script reports its cost (seconds and reference steps, as in
trial_cost.py) and what it learned, on the whole synth_pairs validation split scored the same way
for every candidate (batches of 32, so ITM sees the same number of negatives): MLM and ITM
accuracy, MIM and total loss.

This looks only at the pre-training objectives, never at fine-tuning: it is how a cheaper budget is
chosen without looking at the effect it must keep (scripts/pretraining_helps.py then checks that).

    .venv/bin/python benchmarks/pretrain_budget.py --workdir /tmp/budget --jobs 2
    .venv/bin/python benchmarks/pretrain_budget.py --candidate "short:pretrain.steps=500" --workdir /tmp/b

A candidate is NAME:PATH=VALUE,PATH=VALUE,... over the laptop profile; "profile" (no overrides)
is run first, as the bar (or taken from an earlier run's results.json with `--bar`). `--jobs 2`
runs two candidates side by side, one thread each.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
from dataclasses import replace
from pathlib import Path

# cheaper budgets at about a third (and a quarter) of the profile's 1,500 x 32 pairs
DEFAULT_CANDIDATES = (
    "steps500:pretrain.steps=500",
    "steps500-lr2e-3:pretrain.steps=500,pretrain.lr=2e-3",
    "bs16-steps1000:pretrain.batch_size=16,pretrain.steps=1000",
    "bs16-steps1000-lr2e-3:pretrain.batch_size=16,pretrain.steps=1000,pretrain.lr=2e-3",
    "bs8-steps2000:pretrain.batch_size=8,pretrain.steps=2000",
    "bs16-steps750-lr2e-3:pretrain.batch_size=16,pretrain.steps=750,pretrain.lr=2e-3",
    "bs8-steps1500:pretrain.batch_size=8,pretrain.steps=1500",
)
EVAL_BATCH = 32


def parse_candidate(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition(":")
    return name, [o for o in overrides.split(",") if o]


def run_candidate(args: tuple[str, list[str], str, int]) -> dict:
    """Pre-train one candidate in this process (one thread); its cost and validation numbers."""
    name, overrides, workdir, threads = args
    import torch

    from m3ae.config import apply_overrides, profile
    from m3ae.train import pretrain
    from m3ae.train.checkpoint import load_checkpoint, load_model_weights
    from m3ae.train.evaluate import evaluate_pretrain
    from m3ae.train.pretrain import build_pretraining

    from trial_cost import reference_step_seconds  # benchmarks/ is the script's folder

    torch.set_num_threads(threads)
    cfg = apply_overrides(profile("laptop"), [f"threads={threads}", "pretrain.eval_every=0", *overrides])
    cache, out = Path(workdir) / "cache", Path(workdir) / name
    reference_before = reference_step_seconds()
    result = pretrain(cfg, out, cache)
    reference = statistics.mean([reference_before, reference_step_seconds()])

    # the whole validation split, in batches of EVAL_BATCH whatever the candidate trained with
    scored = replace(cfg, pretrain=replace(cfg.pretrain, batch_size=EVAL_BATCH, eval_batches=10**6))
    model, _, val_set = build_pretraining(scored, cache)
    load_model_weights(model, load_checkpoint(result.checkpoint), scored, source=str(result.checkpoint))
    with torch.inference_mode():
        val = evaluate_pretrain(model, val_set, scored)
    steps_seconds = result.seconds - result.eval_seconds
    return {"name": name, "overrides": overrides, "steps": cfg.pretrain.steps,
            "batch_size": cfg.pretrain.batch_size, "lr": cfg.pretrain.lr,
            "pairs": cfg.pretrain.steps * cfg.pretrain.batch_size, "seconds": steps_seconds,
            "reference_step_seconds": reference, "reference_steps": steps_seconds / reference,
            "flops": result.flops, "val": val}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidate", dest="candidates", action="append", default=None,
                        metavar="NAME:PATH=VALUE,...", help="a budget to try (repeatable; default: a built-in set)")
    parser.add_argument("--workdir", type=Path, required=True, help="caches, checkpoints and results.json")
    parser.add_argument("--jobs", type=int, default=1, help="candidates run side by side (one thread each)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bar", type=Path, default=None,
                        help="an earlier run's results.json: take its profile row instead of running it again")
    args = parser.parse_args(argv)

    candidates = [parse_candidate(c) for c in (args.candidates or DEFAULT_CANDIDATES)]
    rows = [json.loads(args.bar.read_text())[0]] if args.bar else []
    if not rows:
        candidates.insert(0, ("profile", []))
    args.workdir.mkdir(parents=True, exist_ok=True)
    _warm_cache(args.workdir)  # build the data once, before the workers race for it
    jobs = [(name, overrides, str(args.workdir), args.threads) for name, overrides in candidates]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for row in pool.imap(run_candidate, jobs):
            rows.append(row)
            print(_line(row, rows[0]), flush=True)
    (args.workdir / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"\n{_table(rows)}")


def _warm_cache(workdir: Path) -> None:
    from m3ae.config import profile
    from m3ae.data import build_dataset, build_tokenizer

    cfg = profile("laptop")
    tokenizer = build_tokenizer(cfg, workdir / "cache")
    for split in ("train", "val"):
        build_dataset(cfg.data.pretrain, split, cfg, tokenizer, workdir / "cache")


def _line(row: dict, bar: dict) -> str:
    val = row["val"]
    return (f"{row['name']}: {row['seconds']:.0f} s ({row['reference_steps']:.0f} reference steps, "
            f"x{bar['reference_steps'] / row['reference_steps']:.2f} cheaper), MLM acc {val['val_mlm_acc']:.3f}, "
            f"ITM acc {val['val_itm_acc']:.3f}, MIM loss {val['val_mim_loss']:.4f}, loss {val['val_loss']:.4f}")


def _table(rows: list[dict]) -> str:
    bar = rows[0]
    lines = ["| budget | steps x batch | lr | reference steps | cost vs profile | MLM acc | ITM acc | MIM loss | "
             "loss |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        val = row["val"]
        lines.append(f"| {row['name']} | {row['steps']} x {row['batch_size']} | {row['lr']:g} | "
                     f"{row['reference_steps']:.0f} | {row['reference_steps'] / bar['reference_steps']:.2f} | "
                     f"{val['val_mlm_acc']:.3f} | {val['val_itm_acc']:.3f} | {val['val_mim_loss']:.4f} | "
                     f"{val['val_loss']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
