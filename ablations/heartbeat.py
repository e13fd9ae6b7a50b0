"""Optuna's heartbeat for the trials one search driver runs: a driver that dies stops beating,
its trials go stale, and the next driver fails and retries them."""

from __future__ import annotations

import threading

from ablations.study_run import say


class Heartbeat:
    """Records a heartbeat for every trial this driver runs, from a background thread."""

    def __init__(self, storage, seconds: int | None):
        self.storage, self.seconds = storage, seconds
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="optuna-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        if self.seconds:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def add(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.add(trial_id)
        if self.seconds:
            self.storage.record_heartbeat(trial_id)

    def remove(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.discard(trial_id)

    def _loop(self) -> None:
        while not self.stop.wait(self.seconds):
            with self.lock:
                ids = list(self.trial_ids)
            for tid in ids:
                try:
                    self.storage.record_heartbeat(tid)
                except Exception as error:  # noqa: BLE001 - a missed beat must not kill the search
                    say(f"(heartbeat of trial {tid} not recorded: {error})")
