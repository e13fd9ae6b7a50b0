"""Each lever on the cost of a laptop trial, measured on its own, as ratios in one process.

    .venv/bin/python benchmarks/trial_levers.py                 # 1 thread, laptop profile
    .venv/bin/python benchmarks/trial_levers.py --compile       # + torch.compile (about 2 minutes to compile)

Pre-training step (random batch of the profile's shapes, AdamW step included):
  AdamW    per-tensor loop vs the fused kernel
  bf16     fp32 vs bf16 autocast
  passes   separate (the paper's: one fusion pass per objective) vs joint (MIM and MLM share one)
  compile  eager vs torch.compile (inductor), with --compile
Fine-tuning on synth_vqa (real questions; synthmed and the tokenizer are cached in --workdir):
  padding  a training step with texts padded to model.text.max_length vs to the batch's longest
  eval     one validation pass: every question through both encoders (batch 32, padded to
           max_length) vs each image and each distinct question encoded once (SplitEncoder)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from m3ae.config import apply_overrides, profile
from m3ae.train.flops import count_flops, matmul_peak_flops

from train_step import random_batch, synthetic_vocab, time_steps  # benchmarks/ is the script's folder


def pretrain_step(cfg, *, fused: bool = True, bf16: bool = False, compile_: bool = False):
    """A training step closure of the profile's model on a random batch, and its FLOPs."""
    from m3ae.model import build_model

    vocab = synthetic_vocab(cfg.data.vocab_size)
    torch.manual_seed(0)
    model = build_model(cfg.model, vocab).train()
    forward = torch.compile(model) if compile_ else model
    batch = random_batch(cfg, vocab, cfg.pretrain.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = forward(batch).loss
        loss.backward()
        optimizer.step()

    _, flops = count_flops(step) if not compile_ else (None, 0)
    return step, flops


def compare(label: str, before, after, repeats: int) -> None:
    """Median step times of two (step, flops) pairs, printed with their ratio."""
    (step_a, flops_a), (step_b, flops_b) = before, after
    a, b = time_steps(step_a, repeats), time_steps(step_b, repeats)
    flops = f"   FLOPs x{flops_b / flops_a:.2f}" if flops_a and flops_b else ""
    print(f"{label:<44}{a * 1e3:>9.1f} ms{b * 1e3:>9.1f} ms   speed x{a / b:.2f}{flops}", flush=True)


def vqa_data(cfg, workdir: Path):
    from m3ae.data import build_dataset, build_tokenizer, text_vocab

    tokenizer = build_tokenizer(cfg, workdir / "cache")
    train = build_dataset("synth_vqa", "train", cfg, tokenizer, workdir / "cache")
    val = build_dataset("synth_vqa", "val", cfg, tokenizer, workdir / "cache")
    return tokenizer, text_vocab(tokenizer), train, val


def padded_to_max(batch, max_length: int, pad_id: int):
    """The same batch with its texts padded to max_length (as before padding to the longest)."""
    from dataclasses import replace

    extra = max_length - batch.input_ids.shape[1]
    pad = lambda t, value: torch.nn.functional.pad(t, (0, extra), value=value)  # noqa: E731
    return replace(batch, input_ids=pad(batch.input_ids, pad_id), attention_mask=pad(batch.attention_mask, 0),
                   word_ids=pad(batch.word_ids, -1))


def finetune_levers(cfg, workdir: Path, repeats: int) -> None:
    from m3ae.data import make_loader
    from m3ae.model import build_model
    from m3ae.train import get_task
    from m3ae.train.evaluate import SplitEncoder

    tokenizer, vocab, train, val = vqa_data(cfg, workdir)
    task = get_task("synth_vqa")
    torch.manual_seed(0)
    model = build_model(cfg.model, vocab)
    head = task.build_head(model, train)
    params = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
    batch = next(iter(make_loader(train, cfg.finetune.batch_size, train=True, cfg=cfg, seed=0)))
    wide = padded_to_max(batch, cfg.model.text.max_length, vocab.pad_id)

    def step_on(b):
        def step():
            optimizer.zero_grad(set_to_none=True)
            task.loss(model, head, b).backward()
            optimizer.step()
        return step, count_flops(step)[1]

    model.train()
    compare(f"fine-tune step: padding {wide.input_ids.shape[1]} -> {batch.input_ids.shape[1]} tokens",
            step_on(wide), step_on(batch), repeats)

    model.eval()

    def per_question():
        with torch.inference_mode():
            for b in make_loader(val, cfg.finetune.batch_size, train=False, cfg=cfg, seed=0):
                b = padded_to_max(b, cfg.model.text.max_length, vocab.pad_id)
                head(model.encode(b.images, b.input_ids, b.attention_mask).pooled)

    def encode_once():
        with torch.inference_mode():
            encoder = SplitEncoder(model, chunk=cfg.finetune.eval_batch_size)
            for b in make_loader(val, cfg.finetune.eval_batch_size, train=False, cfg=cfg, seed=0):
                encoder.add(b)
            head(encoder.pooled())

    times = []
    for fn in (per_question, encode_once):
        fn()  # warm-up
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    print(f"{f'validation pass ({len(val)} questions, {len(set(val.image_index.tolist()))} images)':<44}"
          f"{times[0] * 1e3:>9.0f} ms{times[1] * 1e3:>9.0f} ms   speed x{times[0] / times[1]:.2f}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--workdir", type=Path, default=Path("ablate-runs/benchmarks"),
                        help="synthmed and tokenizer cache (built on first use)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = profile(args.profile)
    peak, peak_bf16 = matmul_peak_flops(), matmul_peak_flops(dtype=torch.bfloat16)
    print(f"threads {args.threads}; 1024x1024 matmul peak: fp32 {peak / 1e9:.0f} GFLOP/s, "
          f"bf16 {peak_bf16 / 1e9:.0f} GFLOP/s\n")
    print(f"{'lever (before -> after)':<44}{'before':>12}{'after':>12}")
    compare("pre-train step: AdamW loop -> fused", pretrain_step(cfg, fused=False), pretrain_step(cfg),
            args.repeats)
    compare("pre-train step: fp32 -> bf16 autocast", pretrain_step(cfg), pretrain_step(cfg, bf16=True),
            args.repeats)
    joint = apply_overrides(cfg, {"model.passes": "joint"})
    compare("pre-train step: passes separate -> joint", pretrain_step(cfg), pretrain_step(joint), args.repeats)
    if args.compile:
        compare("pre-train step: eager -> torch.compile", pretrain_step(cfg), pretrain_step(cfg, compile_=True),
                args.repeats)
    finetune_levers(cfg, args.workdir, args.repeats)


if __name__ == "__main__":
    main()
