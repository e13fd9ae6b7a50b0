"""The on-disk cache for generated data and trained tokenizers.

Several Ray trials may ask for the same entry at the same moment. An entry is a
directory `<root>/<name>` built once: the first process takes an exclusive
`fcntl` lock, builds into a temporary sibling directory and renames it into
place (`os.replace`, atomic on one file system); the others wait on the lock
and then find the finished entry. A crash mid-build leaves only a temporary
directory behind, never a half-written entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from m3ae.config import config_hash

_COMPLETE = "COMPLETE"  # marker written last inside a finished entry


def entry_name(prefix: str, settings: dict) -> str:
    """'<prefix>-<hash of settings>': the settings are what the content depends on."""
    return f"{prefix}-{config_hash(settings)}"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if missing), released on exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def is_complete(entry: Path) -> bool:
    return (entry / _COMPLETE).exists()


def cached_entry(root: Path, name: str, build: Callable[[Path], None], settings: dict | None = None) -> Path:
    """Return `<root>/<name>`, calling `build(tmp_dir)` to fill it if it does not exist yet.

    `build` writes its files into the directory it is given; `settings` (if any)
    are saved beside them as settings.json so an entry says what made it.
    """
    root = Path(root)
    entry = root / name
    if is_complete(entry):
        return entry
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{name}.lock"):
        if is_complete(entry):  # another process built it while we waited
            return entry
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.tmp-"))
        try:
            build(tmp)
            if settings is not None:
                write_json(tmp / "settings.json", settings)
            (tmp / _COMPLETE).write_text(f"built by pid {os.getpid()}\n")
            if entry.exists():  # an incomplete leftover of a crashed build (we hold the lock)
                shutil.rmtree(entry)
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return entry


def builder_pid(entry: Path) -> int:
    """The pid of the process that built an entry (tests use it to check it was built once)."""
    return int((entry / _COMPLETE).read_text().split()[-1])


def write_json(path: Path, data) -> None:
    """Write JSON atomically (temp file in the same directory + os.replace)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def read_json(path: Path):
    with open(path) as handle:
        return json.load(handle)
