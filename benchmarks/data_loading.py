"""Is the laptop profile data-bound? And how fast is synthmed generated?

    .venv/bin/python benchmarks/data_loading.py [--cache DIR] [--batches 60] [--gen-pairs 2000]

Three numbers, all on one thread:
  1. generation: synthmed pre-training pairs (scenes, reports, 64 px images) per
     second, measured on --gen-pairs and extrapolated to the 20,000 pairs the
     issue asks for in under a minute;
  2. the loader: batches per second of `make_loader` on the laptop profile's
     pre-training set (batch size, image size, augmentation and text length of
     the profile; num_workers=0, i.e. in the training process);
  3. the model: pre-training steps per second (forward + backward + AdamW) of
     the laptop model on those batches.
The loader's share of a training step is t_data / (t_data + t_step); the
profile is not data-bound when it is small (workers would hide it entirely).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def generation_rate(n: int) -> tuple[float, float]:
    """Pairs per second of CPU time and of wall time: scenes + reports + 64 px rendering,
    one core (numpy runs these element-wise ops single-threaded). CPU time is the fair
    number on a shared machine; wall time is what a user waits when the core is free."""
    from m3ae.config import DataConfig
    from m3ae.data.synthmed import tasks
    from m3ae.data.synthmed.render import render

    data = DataConfig(synth_pairs=n)
    cpu, wall = time.process_time(), time.perf_counter()
    st = tasks.streams(0, "synth_pairs", "train")
    scenes = tasks.task_scenes("synth_pairs", n, st)
    tasks.task_records("synth_pairs", scenes, data, st.text)
    render(scenes, 64, st.pixels)
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)


def loader_rate(dataset, cfg, batches: int) -> tuple[float, list]:
    from m3ae.data import make_loader

    loader = iter(make_loader(dataset, cfg.pretrain.batch_size, train=True, cfg=cfg, seed=0))
    kept = [next(loader) for _ in range(3)]  # warm-up (and batches for the model)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches / (time.perf_counter() - start), kept


def model_rate(cfg, tokenizer, batches: list, steps: int) -> float | None:
    try:
        from m3ae.data import text_vocab
        from m3ae.model import build_model
    except ImportError as error:  # the model is another module: say so instead of guessing
        print(f"model not available ({error}); no step rate")
        return None
    torch.manual_seed(0)
    model = build_model(cfg.model, text_vocab(tokenizer))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        model(batch).loss.backward()
        optimizer.step()

    step(batches[0])  # warm-up
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "m3ae-bench-cache")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--gen-pairs", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from m3ae.config import profile
    from m3ae.data import build_dataset, build_tokenizer

    gen, gen_wall = generation_rate(args.gen_pairs)
    print(f"generation: {gen:,.0f} pairs/s of CPU time at 64 px on one core (measured on {args.gen_pairs:,}; "
          f"{gen_wall:,.0f}/s of wall time on this machine now) -> 20,000 pairs in {20000 / gen:.1f} s CPU "
          f"(goal: under 60 s)")

    cfg = profile("laptop")
    start = time.perf_counter()
    tokenizer = build_tokenizer(cfg, args.cache)
    dataset = build_dataset(cfg.data.pretrain, "train", cfg, tokenizer, args.cache)
    print(f"laptop pre-training set: {len(dataset):,} pairs at {cfg.model.vision.image_size} px "
          f"(built or loaded from {args.cache} in {time.perf_counter() - start:.1f} s)")

    data_rate, batches = loader_rate(dataset, cfg, args.batches)
    print(f"loader: {data_rate:.1f} batches/s of {cfg.pretrain.batch_size} "
          f"({1000 / data_rate:.1f} ms per batch, augment={cfg.data.augment}, num_workers=0, 1 thread)")
    step_rate = model_rate(cfg, tokenizer, batches, args.steps)
    result = {"generation_pairs_per_cpu_s": gen, "generation_pairs_per_wall_s": gen_wall,
              "cpu_seconds_for_20k_pairs": 20000 / gen,
              "loader_batches_per_s": data_rate, "model_steps_per_s": step_rate}
    if step_rate:
        share = (1 / data_rate) / (1 / data_rate + 1 / step_rate)
        result["data_share_of_step"] = share
        print(f"model: {step_rate:.2f} pre-training steps/s (1 thread) -> the loader is "
              f"{data_rate / step_rate:.0f}x faster than the model; data loading is {100 * share:.1f}% of a step "
              f"with num_workers=0 ({'not ' if share < 0.1 else ''}data-bound)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
