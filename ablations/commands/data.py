"""`ablate data show TASK`: a PNG grid of samples, each image with its text beside it.
`ablate data check --data-root DIR`: the real datasets on disk against their published counts.

    ablate data show synth_vqa --n 16 --out grid.png
    ablate data show synth_pairs --profile smoke --split val
    ablate data check --data-root /data --out manifest.json

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
    parser.add_argument("action", choices=("show", "check"),
                        help="show: write a PNG grid of samples with their texts; check: examples, images and "
                             "id hashes of the real datasets under --data-root")
    parser.add_argument("task", metavar="TASK", nargs="?", help="show: dataset name, e.g. synth_vqa")
    parser.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    parser.add_argument("--out", type=Path, default=None,
                        help="show: PNG path (default <workdir>/data/<task>_<split>.png); check: the manifest "
                             "JSON (default <workdir>/data/manifest.json)")
    parser.add_argument("--data-root", type=Path, default=None, help="check: the folder holding the datasets")
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

    if args.action == "check":
        return check(args)
    if args.task is None:
        raise UsageError("data show: name a dataset, e.g. ablate data show synth_vqa")
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


def check(args) -> int:
    """Print a table per dataset and split, write the manifest; 1 when a dataset present is incomplete."""
    import json
    from dataclasses import asdict

    from ablate_common.tables import render_table
    from ablations.cli import UsageError
    from ablations.paths import within
    from m3ae.data.real.check import check_root

    if args.data_root is None or not args.data_root.expanduser().is_dir():
        raise UsageError(f"data check: --data-root must be an existing folder, got {args.data_root}")
    root = args.data_root.expanduser().absolute()
    checks = check_root(root)
    count = lambda value: "?" if value is None else f"{value:,}"  # noqa: E731
    rows = [[c.dataset, c.split, f"{c.examples:,}", count(c.published_examples), f"{c.images_found:,}/{c.images:,}",
             count(c.published_images), f"{c.missing_count:,}", c.ids_hash or "-",
             c.error or (f"missing e.g. {c.missing[0]}" if c.missing else "")] for c in checks]
    print(render_table(["dataset", "split", "examples", "published", "images found", "published", "missing",
                        "ids sha256", "note"], rows))
    out = (args.out or within(args.workdir, "data", "manifest.json")).expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"data_root": str(root), "splits": [asdict(c) for c in checks]}, indent=1))
    print(f"wrote {out} (each split's ids and their hash: compare hashes to know two runs used the same split)")
    present = [c for c in checks if not c.error.startswith("no folder")]
    return 0 if all(c.complete for c in present) else 1
