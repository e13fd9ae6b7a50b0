"""The synthmed tasks: generation of every split and its on-disk cache.

Each task is generated from its own seed stream, derived from
(data.synth_seed, task, split), so the fine-tuning images never repeat the
pre-training images but come from the same distribution. Within a stream,
scene attributes, text phrasing and pixel noise use separate generators, so
the reports (the tokenizer's corpus) can be produced without rendering.

Split sizes: synth_pairs has `data.synth_pairs` training pairs plus val and
test of max(16, n/20) each; the fine-tuning tasks split their totals
(`synth_vqa_images` images, `synth_cls_pairs`, `synth_irtr_pairs`) 60/20/20;
`synth_vqa_eval_images`, when set, is the size of synth_vqa's val and test
splits instead (a small training set evaluated on many images).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m3ae.data.cache import cached_entry, entry_name, read_json, write_json
from m3ae.data.synthmed import text as T
from m3ae.data.synthmed.render import render
from m3ae.data.synthmed.scene import (INTENSITIES, KINDS, MAX_FINDINGS, MODALITIES, POSITIONS, REGIONS, SHAPES,
                                      SIDES, SIZES, Scenes, primary_finding, sample_scenes)
from m3ae.versions import SYNTHMED_VERSION

SPLITS = ("train", "val", "test")
TASKS = ("synth_pairs", "synth_vqa", "synth_cls", "synth_irtr")
# the data fields each task's content depends on, besides the seed, image size and scanner variation
TASK_FIELDS = {"synth_pairs": ("synth_pairs",),
               "synth_vqa": ("synth_vqa_images", "synth_questions_per_image", "synth_vqa_eval_images"),
               "synth_cls": ("synth_cls_pairs",), "synth_irtr": ("synth_irtr_pairs",)}
CLS_CLASSES = ("normal",) + KINDS


def split_sizes(task: str, data) -> dict[str, int]:
    """Number of images per split for a task, from the DataConfig."""
    if task == "synth_pairs":
        held = max(16, data.synth_pairs // 20)
        return {"train": data.synth_pairs, "val": held, "test": held}
    total = {"synth_vqa": data.synth_vqa_images, "synth_cls": data.synth_cls_pairs,
             "synth_irtr": data.synth_irtr_pairs}[task]
    held = max(4, round(total * 0.2))
    if task == "synth_vqa" and data.synth_vqa_eval_images:  # few labels, but evaluated on many
        held = data.synth_vqa_eval_images
    return {"train": max(4, total - 2 * held), "val": held, "test": held}


def settings(task: str, data, image_size: int) -> dict:
    """Everything the generated content depends on: the cache key."""
    return {"generator": SYNTHMED_VERSION, "task": task, "synth_seed": data.synth_seed, "image_size": image_size,
            "scanner_variation": data.synth_scanner_variation, **{k: getattr(data, k) for k in TASK_FIELDS[task]}}


@dataclass
class Streams:
    scenes: np.random.Generator
    pixels: np.random.Generator
    text: random.Random


def streams(seed: int, task: str, split: str) -> Streams:
    """Independent generators for one (seed, task, split)."""
    seq = np.random.SeedSequence([seed, TASKS.index(task), SPLITS.index(split)])
    s_scenes, s_pixels, s_text = seq.spawn(3)
    return Streams(np.random.default_rng(s_scenes), np.random.default_rng(s_pixels),
                   random.Random(int(s_text.generate_state(1)[0])))


# ------------------------------------------------------------------ scenes and texts (no pixels)


def task_scenes(task: str, n: int, st: Streams) -> Scenes:
    if task == "synth_irtr":  # n/2 scenes and their near misses
        return near_miss_pairs(sample_scenes((n + 1) // 2, st.scenes), st.scenes).select(slice(0, n))
    return sample_scenes(n, st.scenes)


def near_miss_pairs(base: Scenes, rng: np.random.Generator) -> Scenes:
    """Interleave each scene with a copy differing in exactly one attribute
    (modality, region, a finding's kind/size/side-position/intensity/shape,
    or one finding more or fewer): [b0, v0, b1, v1, ...]."""
    variant = Scenes(**{k: v.copy() for k, v in base.to_arrays().items()})
    for i in range(len(base)):
        count = int(base.count[i])
        options = ["modality", "region"] + (["kind", "size", "slot", "intensity", "shape", "fewer"] if count else [])
        options += ["more"] if count < MAX_FINDINGS else []
        change = options[rng.integers(len(options))]
        k = int(rng.integers(max(count, 1)))  # the finding to change
        if change in ("modality", "region"):
            values = MODALITIES if change == "modality" else REGIONS
            current = getattr(variant, change)
            current[i] = (current[i] + rng.integers(1, len(values))) % len(values)
        elif change in ("size", "intensity", "shape"):
            values = getattr(variant, change)
            n_values = len({"size": SIZES, "intensity": INTENSITIES, "shape": SHAPES}[change])
            values[i, k] = (values[i, k] + rng.integers(1, n_values)) % n_values
        elif change == "kind":
            used = set(base.kind[i, :count].tolist())
            variant.kind[i, k] = rng.choice([c for c in range(len(KINDS)) if c not in used])
        elif change == "slot":
            used = {(int(base.side[i, j]), int(base.position[i, j])) for j in range(count)}
            free = [(s, p) for s in range(len(SIDES)) for p in range(len(POSITIONS)) if (s, p) not in used]
            variant.side[i, k], variant.position[i, k] = free[rng.integers(len(free))]
        elif change == "fewer":
            variant.count[i] -= 1
        else:
            variant.count[i] += 1
    order = np.stack([np.arange(len(base)), np.arange(len(base)) + len(base)], axis=1).reshape(-1)
    return Scenes.concat([base, variant]).select(order)


def task_records(task: str, scenes: Scenes, data, rnd: random.Random) -> dict:
    """The text side of a split: reports, captions+labels, or questions+answers."""
    n = len(scenes)
    if task in ("synth_pairs", "synth_irtr"):
        return {"texts": [T.report(scenes, i, rnd) for i in range(n)], "image_index": list(range(n))}
    if task == "synth_cls":
        labels = primary_finding(scenes)
        return {"texts": [T.caption(scenes, i, int(labels[i]), rnd) for i in range(n)],
                "image_index": list(range(n)), "labels": labels.tolist()}
    rows = [(i, *qa) for i in range(n) for qa in T.questions(scenes, i, data.synth_questions_per_image, rnd)]
    return {"texts": [r[1] for r in rows], "image_index": [r[0] for r in rows],
            "answers": [r[2] for r in rows], "answer_types": [r[3] for r in rows]}


def synth_texts(task: str, split: str, data) -> list[str]:
    """The texts of a split without rendering a pixel (the tokenizer's corpus)."""
    n = split_sizes(task, data)[split]
    st = streams(data.synth_seed, task, split)
    return task_records(task, task_scenes(task, n, st), data, st.text)["texts"]


# ------------------------------------------------------------------ the cache entry


def build_task(task: str, data, image_size: int, cache_dir: Path) -> Path:
    """Generate (or find) every split of a task; returns the cache entry directory:
    `{split}_images.npy` [N, S, S] uint8, `{split}_scenes.npz`, `{split}.json`, meta.json."""
    config = settings(task, data, image_size)

    def build(out: Path) -> None:
        meta: dict = {"splits": {}}
        for split, n in split_sizes(task, data).items():
            st = streams(data.synth_seed, task, split)
            scenes = task_scenes(task, n, st)
            records = task_records(task, scenes, data, st.text)
            np.save(out / f"{split}_images.npy",
                    render(scenes, image_size, st.pixels, data.synth_scanner_variation))
            np.savez(out / f"{split}_scenes.npz", **scenes.to_arrays())
            write_json(out / f"{split}.json", records)
            meta["splits"][split] = {"images": len(scenes), "examples": len(records["texts"])}
        if task == "synth_vqa":  # one label per distinct answer over all splits
            meta["answers"] = sorted({a for s in SPLITS for a in read_json(out / f"{s}.json")["answers"]})
        if task == "synth_cls":
            meta["classes"] = list(CLS_CLASSES)
        write_json(out / "meta.json", meta)

    return cached_entry(Path(cache_dir) / "synthmed", entry_name(task, config), build, settings=config)


@dataclass
class SynthSplit:
    """One split of a task as loaded from the cache."""

    images: np.ndarray  # [M, S, S] uint8 (memory-mapped)
    scenes: Scenes  # M scenes
    records: dict  # texts, image_index, labels / answers, answer_types
    meta: dict


def load_split(task: str, split: str, data, image_size: int, cache_dir: Path) -> SynthSplit:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {list(SPLITS)}")
    entry = build_task(task, data, image_size, cache_dir)
    with np.load(entry / f"{split}_scenes.npz") as arrays:
        scenes = Scenes.from_arrays(arrays)
    return SynthSplit(np.load(entry / f"{split}_images.npy", mmap_mode="r"), scenes,
                      read_json(entry / f"{split}.json"), read_json(entry / "meta.json"))
