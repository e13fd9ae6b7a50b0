"""Adaptive seeds on Ray Tune: a `Searcher` that emits seed trials round by round.

Tune asks for trials (`suggest`) and reports them back (`on_trial_complete`); the race
(`ablations.sequential.Race`) decides which (setting, seed) comes next. Between rounds
`suggest` returns None (wait for the round's trials) and at the end `FINISHED`. Because the
race is rebuilt from the trials MLflow holds, a killed study resumes where it stopped and a
finished trial is never run again; the searcher's own checkpoint is a convenience for Tune.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping

from ray.tune.search import Searcher

from ablations.sequential import Race
from ablations.study import Trial


class SeedSearcher(Searcher):
    """`trials`: (setting index, seed) -> Trial for every trial the race may run; `afford(n)`:
    whether a round of n more trials fits the budget; `on_duration(seconds)` hears each trial's time."""

    def __init__(self, race: Race, trials: Mapping[tuple[int, int], Trial], metric: str, mode: str,
                 afford: Callable[[int], bool] | None = None, on_duration: Callable[[float], None] | None = None):
        super().__init__(metric=metric, mode=mode)
        self.race, self.trials = race, trials
        self.afford, self.on_duration = afford, on_duration
        self.jobs: dict[str, tuple[int, int]] = {}  # Tune trial id -> (setting, seed)

    def suggest(self, trial_id: str):
        job = self.race.take()
        if job is None:
            if self.race.round_open:
                return None  # the round's last trials are still running
            if not self.race.advance(self.afford):
                return Searcher.FINISHED
            job = self.race.take()
        self.jobs[trial_id] = job
        return {"trial": self.trials[job].to_payload()}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        job = self.jobs.pop(trial_id, None)
        if job is None:
            return
        value = None
        if not error and result and result.get("phase") == "test":  # not stopped early by the scheduler
            value = result.get(self.metric)
        if result and self.on_duration is not None and result.get("time_total_s"):
            self.on_duration(float(result["time_total_s"]))
        self.race.record(*job, value)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump({"race": self.race, "jobs": self.jobs}, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)
        self.race, self.jobs = state["race"], state["jobs"]
