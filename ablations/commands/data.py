"""`ablate data show TASK`: a PNG grid of samples, each image with its text beside it.

    ablate data show synth_vqa --n 16 --out grid.png
    ablate data show synth_pairs --profile smoke --split val

TASK is a dataset name (synth_pairs, synth_vqa, synth_cls, synth_irtr, or a
real one with --set data.root=...). Generated data is cached in <workdir>/cache;
the grid goes to --out (default <workdir>/data/<task>_<split>.png).
"""

from __future__ import annotations

import argparse
import math
import textwrap
from pathlib import Path

IMAGE_PX = 128  # each sample's image, upscaled
TEXT_PX = 340  # the text column beside it
PAD = 8
TITLE_PX = 28
MAX_COLUMNS = 4
LINE_PX = 14


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # a positional action rather than nested subparsers, so --workdir works anywhere on the line
    parser.add_argument("action", choices=("show",), help="show: write a PNG grid of samples with their texts")
    parser.add_argument("task", metavar="TASK", help="dataset name, e.g. synth_vqa")
    parser.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default <workdir>/data/<task>_<split>.png)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--profile", default="laptop",
                        help="smoke | laptop | paper: image size and data sizes (default laptop)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a config value, e.g. data.synth_seed=1 (repeatable)")


def grid_size(n: int) -> tuple[int, int]:
    """(width, height) in pixels of the grid for n samples."""
    columns = min(n, MAX_COLUMNS)
    rows = math.ceil(n / columns)
    return PAD + columns * (IMAGE_PX + TEXT_PX + PAD), TITLE_PX + PAD + rows * (IMAGE_PX + PAD)


def describe(dataset, i: int) -> str:
    """The text shown beside sample i."""
    if dataset.kind == "vqa":
        kind = "closed" if int(dataset.answer_types[i]) == 0 else "open"
        return f"Q: {dataset.texts[i]}\nA: {dataset.label_text(i)} ({kind})"
    if dataset.kind == "cls":
        return f"{dataset.texts[i]}\nlabel: {dataset.label_text(i)}"
    return f"[image {int(dataset.image_index[i])}] {dataset.texts[i]}"


def render_grid(dataset, n: int, title: str):
    """A PIL image: n samples spread evenly over the dataset."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    picks = np.unique(np.linspace(0, len(dataset) - 1, n).round().astype(int))
    if len(picks) < n:  # fewer examples than asked: show them all
        n = len(picks)
    width, height = grid_size(n)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12)
    draw.text((PAD, PAD), title, fill="black", font=font)
    chars = TEXT_PX // 7
    max_lines = IMAGE_PX // LINE_PX
    columns = min(n, MAX_COLUMNS)
    for slot, i in enumerate(picks):
        x = PAD + (slot % columns) * (IMAGE_PX + TEXT_PX + PAD)
        y = TITLE_PX + PAD + (slot // columns) * (IMAGE_PX + PAD)
        pixels = dataset[int(i)].image.permute(1, 2, 0).numpy()
        canvas.paste(Image.fromarray(pixels).resize((IMAGE_PX, IMAGE_PX), Image.Resampling.NEAREST), (x, y))
        lines = [part for para in describe(dataset, int(i)).split("\n") for part in textwrap.wrap(para, chars)]
        if len(lines) > max_lines:
            lines = lines[:max_lines - 1] + [lines[max_lines - 1][:chars - 3] + "..."]
        draw.multiline_text((x + IMAGE_PX + PAD, y), "\n".join(lines), fill="black", font=font, spacing=2)
    return canvas


def run(args) -> int:
    from ablations.cli import UsageError
    from ablations.paths import within
    from m3ae.config import apply_overrides, profile
    from m3ae.data import build_dataset

    from m3ae.registry import DATASETS

    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    for part in args.task.split("+"):
        if part not in DATASETS:
            raise UsageError(DATASETS.unknown_message(part))
    cfg = apply_overrides(profile(args.profile), args.overrides)
    # the grid shows raw texts and pixels: no tokenizer needed
    dataset = build_dataset(args.task, args.split, cfg, None, args.workdir / "cache")
    out = (args.out or within(args.workdir, "data", f"{args.task}_{args.split}.png")).expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    title = (f"{args.task} / {args.split}: {len(dataset)} examples, {cfg.model.vision.image_size} px "
             f"(profile {args.profile})")
    render_grid(dataset, args.n, title).save(out)
    print(f"wrote {out}")
    return 0
