"""The data cache: built once per settings, atomic, safe when two processes build the same entry."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os

import numpy as np
import pytest

from m3ae.config import DataConfig
from m3ae.data.cache import builder_pid, cached_entry, is_complete
from m3ae.data.synthmed import tasks

SMALL = DataConfig(synth_pairs=48, synth_vqa_images=20, synth_questions_per_image=3)


def test_entry_is_reused_and_keyed_by_settings(tmp_path):
    first = tasks.build_task("synth_pairs", SMALL, 16, tmp_path)
    stamp = (first / "train_images.npy").stat().st_mtime_ns
    again = tasks.build_task("synth_pairs", SMALL, 16, tmp_path)
    assert again == first and (again / "train_images.npy").stat().st_mtime_ns == stamp
    assert tasks.read_json(first / "settings.json")["image_size"] == 16
    # any setting the content depends on gives a new entry; others do not
    assert tasks.build_task("synth_pairs", SMALL, 24, tmp_path) != first
    reseeded = DataConfig(**{**SMALL.__dict__, "synth_seed": 3})
    assert tasks.build_task("synth_pairs", reseeded, 16, tmp_path) != first
    unrelated = DataConfig(**{**SMALL.__dict__, "num_workers": 2, "synth_cls_pairs": 99, "vocab_size": 500})
    assert tasks.build_task("synth_pairs", unrelated, 16, tmp_path) == first
    assert np.load(first / "train_images.npy").dtype == np.uint8


def test_failed_build_leaves_nothing(tmp_path):
    def broken(out):
        (out / "partial.npy").write_bytes(b"half")
        raise RuntimeError("generator crashed")

    with pytest.raises(RuntimeError):
        cached_entry(tmp_path, "entry", broken)
    assert not (tmp_path / "entry").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".entry.tmp")]
    built = cached_entry(tmp_path, "entry", lambda out: (out / "ok.txt").write_text("fine"))
    assert is_complete(built) and (built / "ok.txt").read_text() == "fine"


def _build_in_child(cache_dir, barrier, results):
    barrier.wait()  # both processes ask for the entry at the same moment
    entry = tasks.build_task("synth_vqa", SMALL, 16, cache_dir)
    digest = hashlib.sha256(np.load(entry / "train_images.npy").tobytes()).hexdigest()
    results.put((os.getpid(), str(entry), digest, builder_pid(entry)))


def test_two_processes_build_the_same_entry_once(tmp_path):
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    children = [ctx.Process(target=_build_in_child, args=(tmp_path, barrier, results)) for _ in range(2)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    (pid_a, entry_a, digest_a, built_a), (pid_b, entry_b, digest_b, built_b) = outcomes
    assert entry_a == entry_b and digest_a == digest_b
    assert built_a == built_b and built_a in (pid_a, pid_b)  # one built, the other waited and re-used it
    entries = sorted(p.name for p in (tmp_path / "synthmed").iterdir() if not p.name.endswith(".lock"))
    assert len(entries) == 1, entries  # no temporary directories left behind
