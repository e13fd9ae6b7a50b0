"""One `ablate run` per study and work directory at a time.

    with study_lock(workdir, "mask_ratio"):   # <workdir>/locks/mask_ratio.lock
        run the study

An fcntl lock: the kernel releases it when the holder exits, however it exits (a
SIGKILLed driver leaves no stale lock). A second `ablate run` of the same study
fails at once with `StudyLocked` (exit code 2, nothing started) instead of racing
the first for the same trials. The holder's pid is written into the file for the message.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from ablations.paths import within


class StudyLocked(RuntimeError):
    """Another live process holds the study's lock."""


@contextmanager
def study_lock(workdir: Path, study_name: str):
    path = within(Path(workdir), "locks", f"{study_name}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip()
            holder, stop = (f"process {pid}", f"kill {pid}") if pid.isdigit() else ("another process", "Ctrl-C")
            raise StudyLocked(
                f"study {study_name} is already running in {holder} on this work directory ({workdir}); "
                f"wait for it to finish, or stop it ({stop}) and run the same command again: finished "
                f"trials are kept") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
