"""Speed of a pre-training step: samples/s and achieved FLOP/s against the
machine's dense matmul FLOP/s measured in the same process (model FLOP
utilisation, MFU), for the smoke, laptop and paper profiles; and the image
branch (ViT encoder on visible patches + MIM decoder + loss) against
transformers' ViTMAEForPreTraining at the same size and mask ratio.

    .venv/bin/python benchmarks/train_step.py                 # all, 1 thread
    .venv/bin/python benchmarks/train_step.py --profiles laptop --threads 2
    .venv/bin/python benchmarks/train_step.py --profile-ops   # + torch.profiler top ops (laptop)

FLOPs are counted by torch.utils.flop_counter on one real step (forward +
backward); inputs are random tensors, so the data pipeline is not measured.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from m3ae.batch import Batch, TextVocab
from m3ae.config import profile
from m3ae.train.flops import count_flops, matmul_peak_flops

PAPER_BATCH = 2  # the paper profile: forward + backward of one small batch


def random_batch(cfg, vocab: TextVocab, batch_size: int) -> Batch:
    """A batch shaped like the profile's (random pixels, random words of 1-2 tokens)."""
    size, length = cfg.model.vision.image_size, cfg.model.text.max_length
    ids = torch.randint(len(vocab.special_ids) + 1, vocab.size, (batch_size, length))
    ids[:, 0], ids[:, -1] = vocab.cls_id, vocab.sep_id
    word_ids = torch.arange(length).div(2, rounding_mode="floor").expand(batch_size, -1).clone()
    word_ids[:, 0] = word_ids[:, -1] = -1
    return Batch(images=torch.randn(batch_size, 3, size, size), input_ids=ids,
                 attention_mask=torch.ones(batch_size, length, dtype=torch.long), word_ids=word_ids,
                 image_ids=torch.arange(batch_size))


def synthetic_vocab(size: int) -> TextVocab:
    return TextVocab(size=size, pad_id=0, mask_id=4, cls_id=2, sep_id=3, special_ids=(0, 1, 2, 3, 4))


def time_steps(step, repeats: int) -> float:
    """Median seconds of `step()` after two warm-up calls."""
    step(), step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_step(module, optimizer, loss_of):
    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_of().backward()
        optimizer.step()
    return step


def bench_m3ae(name: str, repeats: int, peak: float) -> dict:
    from m3ae.model import build_model

    cfg = profile(name)
    batch_size = PAPER_BATCH if name == "paper" else cfg.pretrain.batch_size
    vocab = synthetic_vocab(cfg.data.vocab_size)
    torch.manual_seed(0)
    model = build_model(cfg.model, vocab).train()
    batch = random_batch(cfg, vocab, batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    step = training_step(model, optimizer, lambda: model(batch).loss)
    _, flops = count_flops(step)
    seconds = time_steps(step, repeats)
    return {"what": f"M3AE {name} (batch {batch_size})", "seconds": seconds, "samples_per_s": batch_size / seconds,
            "flops": flops, "mfu": flops / seconds / peak}


class ImageBranch(torch.nn.Module):
    """Our image path alone: timm ViT on the visible patches -> MIM decoder -> masked-patch MSE."""

    def __init__(self, cfg):
        super().__init__()
        from m3ae.registry import OBJECTIVES, VISION_ENCODERS

        self.cfg = cfg.model
        self.encoder = VISION_ENCODERS.get("timm")(cfg.model.vision)
        grid = self.encoder.grid_size
        self.mim = OBJECTIVES.get("mim")(cfg.model, self.encoder.width, None, grid, cfg.model.vision.patch_size)

    def forward(self, images):
        from m3ae.model.masking import patchify, random_image_mask, visible_indices

        mask = random_image_mask(images.shape[0], self.encoder.grid_size, self.cfg.mim.mask_ratio)
        keep, ids_restore = visible_indices(mask)
        tokens = self.encoder(images, keep)
        return self.mim(tokens, ids_restore, patchify(images, self.cfg.vision.patch_size), mask).loss


def vitmae(cfg):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    v, m = cfg.model.vision, cfg.model.mim
    width, depth, heads = v.width or 768, v.depth or 12, v.num_heads or 12
    config = ViTMAEConfig(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                          intermediate_size=4 * width, image_size=v.image_size, patch_size=v.patch_size,
                          decoder_hidden_size=m.decoder_width, decoder_num_hidden_layers=m.decoder_depth,
                          decoder_num_attention_heads=m.decoder_heads, decoder_intermediate_size=4 * m.decoder_width,
                          mask_ratio=m.mask_ratio, norm_pix_loss=m.norm_pix_loss, attn_implementation="sdpa")
    return ViTMAEForPreTraining(config)


def bench_image_branch(name: str, repeats: int, peak: float) -> list[dict]:
    cfg = profile(name)
    batch_size = PAPER_BATCH if name == "paper" else cfg.pretrain.batch_size
    images = torch.randn(batch_size, 3, cfg.model.vision.image_size, cfg.model.vision.image_size)
    rows = []
    for label, module, loss_of in (
        ("ours", ImageBranch(cfg), lambda mod: mod(images)),
        ("ViTMAE", vitmae(cfg), lambda mod: mod(pixel_values=images).loss),
    ):
        module.train()
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
        step = training_step(module, optimizer, lambda: loss_of(module))
        _, flops = count_flops(step)
        seconds = time_steps(step, repeats)
        rows.append({"what": f"image branch {name} {label} (batch {batch_size})", "seconds": seconds,
                     "samples_per_s": batch_size / seconds, "flops": flops, "mfu": flops / seconds / peak})
    return rows


def print_row(row: dict) -> None:
    print(f"{row['what']:<44}{row['seconds'] * 1e3:>9.1f} ms{row['samples_per_s']:>9.1f}/s"
          f"{row['flops'] / 1e9:>10.2f} GF{row['flops'] / row['seconds'] / 1e9:>9.1f} GF/s{100 * row['mfu']:>7.1f}%")


def profile_ops(name: str) -> None:
    """The 15 most expensive ops of a laptop step (torch.profiler): where the time goes."""
    from m3ae.model import build_model

    cfg = profile(name)
    vocab = synthetic_vocab(cfg.data.vocab_size)
    model = build_model(cfg.model, vocab).train()
    batch = random_batch(cfg, vocab, cfg.pretrain.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    step = training_step(model, optimizer, lambda: model(batch).loss)
    step(), step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", default="smoke,laptop,paper")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile-ops", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    peak = matmul_peak_flops()
    print(f"threads {args.threads}; dense 1024x1024 fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s\n")
    print(f"{'':<44}{'step':>12}{'samples':>11}{'FLOPs':>13}{'FLOP/s':>14}{'MFU':>8}")
    for name in args.profiles.split(","):
        repeats = 2 if name == "paper" else args.repeats
        print_row(bench_m3ae(name, repeats, peak))
        ours, theirs = bench_image_branch(name, repeats, peak)
        print_row(ours)
        print_row(theirs)
        print(f"{'':<4}image branch ours/ViTMAE: speed x{theirs['seconds'] / ours['seconds']:.2f}, "
              f"FLOPs x{ours['flops'] / theirs['flops']:.2f}, MFU x{ours['mfu'] / theirs['mfu']:.2f}\n")
    if args.profile_ops:
        profile_ops("laptop")


if __name__ == "__main__":
    main()
