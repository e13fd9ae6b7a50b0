"""The pre-train cache: one pre-training per pre-train key, shared by every trial.

    <workdir>/cache/pretrain/<key>/          the pre-train's output folder (checkpoint, pictures)
    <workdir>/cache/pretrain/<key>/entry.json checkpoint name, sha256, MLflow run id, metrics, cost
    <workdir>/cache/pretrain/<key>.lock       fcntl lock held while the key is checked or built

A trial takes the key's lock, reuses a valid entry or builds it, then releases
the lock: two trials that need the same key at once train it once, the second
waits and reuses. A build runs in `.building-<key>/`; if its process is killed,
the next build of that key resumes from the checkpoint left there. An entry whose checkpoint no longer matches its checksum
(a crash mid-copy, a truncated disk) is deleted and rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ENTRY_FILE = "entry.json"


@dataclass(frozen=True)
class CacheEntry:
    checkpoint: Path
    sha256: str
    run_id: str  # the MLflow run of the pre-training that produced it
    metrics: dict
    seconds: float
    flops: float


def file_sha256(path: Path) -> str:
    """sha256 of a file, or of every file under a folder (names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for f in files:
        digest.update(f.relative_to(path).as_posix().encode() if Path(path).is_dir() else b"")
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class PretrainCache:
    def __init__(self, root: Path):
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def lock(self, key: str):
        """Exclusive lock on one key (blocks while another process builds it)."""
        with open(self.root / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get(self, key: str) -> CacheEntry | None:
        """The valid entry for `key`, or None (a corrupt entry is removed). Call under `lock(key)`."""
        folder = self.root / key
        try:
            meta = json.loads((folder / ENTRY_FILE).read_text())
            entry = CacheEntry(**{**meta, "checkpoint": folder / meta["checkpoint"]})
            if file_sha256(entry.checkpoint) == entry.sha256:
                return entry
        except (OSError, ValueError, TypeError, KeyError):
            pass
        if folder.exists():
            shutil.rmtree(folder)
        return None

    def staging(self, key: str) -> Path:
        """The folder to pre-train `key` into (call under `lock(key)`); `put` moves it into
        place. It is the same folder every time, so a build that was killed resumes from
        its last checkpoint."""
        folder = self.root / f".building-{key}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def put(self, key: str, staging: Path, checkpoint: Path, run_id: str, metrics: dict,
            seconds: float, flops: float) -> CacheEntry:
        """Seal a staging folder as the entry of `key` (checksum, then an atomic rename)."""
        checkpoint, staging = Path(checkpoint).absolute(), Path(staging).absolute()
        if not checkpoint.is_relative_to(staging):  # written elsewhere: bring it into the entry
            copy = shutil.copytree if checkpoint.is_dir() else shutil.copy2
            copy(checkpoint, staging / checkpoint.name)
            checkpoint = staging / checkpoint.name
        relative = checkpoint.relative_to(staging)
        meta = {"checkpoint": relative.as_posix(), "sha256": file_sha256(checkpoint), "run_id": run_id,
                "metrics": {k: float(v) for k, v in metrics.items()}, "seconds": float(seconds), "flops": float(flops)}
        tmp = Path(staging) / f"{ENTRY_FILE}.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, Path(staging) / ENTRY_FILE)
        target = self.root / key
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        return CacheEntry(**{**meta, "checkpoint": target / relative})
