"""The pre-train cache: entries are sealed with a checksum, a corrupt one is rebuilt,
and the per-key lock makes a second builder wait for the first."""

from __future__ import annotations

import threading
import time

from ablations.cache import PretrainCache


def build(cache: PretrainCache, key: str, payload: bytes = b"weights") -> None:
    staging = cache.staging(key)
    (staging / "checkpoint.pt").write_bytes(payload)
    cache.put(key, staging, staging / "checkpoint.pt", run_id="run-1", metrics={"mim_loss": 0.5},
              seconds=2.0, flops=3e9)


def test_an_entry_round_trips_and_a_corrupt_one_is_dropped(tmp_path):
    cache = PretrainCache(tmp_path / "pretrain")
    assert cache.get("abc") is None
    build(cache, "abc")
    entry = cache.get("abc")
    assert entry.checkpoint == tmp_path / "pretrain" / "abc" / "checkpoint.pt"
    assert entry.checkpoint.read_bytes() == b"weights"
    assert (entry.run_id, entry.metrics, entry.seconds, entry.flops) == ("run-1", {"mim_loss": 0.5}, 2.0, 3e9)
    assert not list((tmp_path / "pretrain").glob(".building-*"))  # the staging folder became the entry

    entry.checkpoint.write_bytes(b"weigh")  # truncated on disk
    assert cache.get("abc") is None
    assert not (tmp_path / "pretrain" / "abc").exists()  # removed, so the next trial rebuilds it
    build(cache, "abc", b"rebuilt")
    assert cache.get("abc").checkpoint.read_bytes() == b"rebuilt"


def test_the_key_lock_makes_the_second_builder_wait_and_reuse(tmp_path):
    cache = PretrainCache(tmp_path / "pretrain")
    events = []

    def trial(name: str) -> None:
        with cache.lock("k"):
            if cache.get("k") is None:
                events.append(f"{name} builds")
                time.sleep(0.3)
                build(cache, "k")
            else:
                events.append(f"{name} reuses")

    threads = [threading.Thread(target=trial, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e.split()[1] for e in events) == ["builds", "reuses"]
