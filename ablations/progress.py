"""What `ablate run` shows while a study runs: each running trial's stage and step, the study's
done / running / failed counts and an estimate of the time left.

Two halves that meet in a small JSON file per trial (`<trial folder>/progress.json`):
- `TrialProgress` (a training callback, in the trial's process) writes where the trial is: its
  stage (pre-train, fine-tune <task>, eval), step and total, at most once a second and at every
  stage change. A file, not a Tune report: Tune's reports drive its schedulers (ASHA counts them).
- `StudyProgress` (a Tune callback, on the driver) reads the files of the running trials and shows
  them: a live panel (rich) on a terminal, one line per event (start, stage change, end) otherwise.
  Lines stay under `WIDTH` characters.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from m3ae.train.callbacks import Callback

FILE = "progress.json"
WIDTH = 118
WRITE_EVERY = 1.0  # seconds between progress writes inside a trial
POLL_EVERY = 1.0  # seconds between reads on the driver (a few small files)


@dataclass(frozen=True)
class Where:
    """A trial's position: "pre-train" step 120 of 1500, "fine-tune synth_vqa" step 40 of 200, "eval"."""

    phase: str
    step: int = 0
    total: int = 0

    @property
    def stage(self) -> str:
        """The phase without its evaluations: "fine-tune synth_vqa" and its "... eval" passes are one stage
        (a log off a terminal would otherwise get two lines an epoch); "... done" is a stage of its own."""
        return self.phase.removesuffix(" eval")

    def text(self) -> str:
        if self.total:
            return f"{self.phase} {self.step}/{self.total} ({100 * self.step / self.total:.0f}%)"
        return f"{self.phase} step {self.step}" if self.step else self.phase


class TrialProgress(Callback):
    """Writes the trial's current stage and step to `path` (atomically: the driver never reads half)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic):
        self.path, self.clock = Path(path), clock
        self.total: dict[str, int] = {}
        self.last_write = -math.inf

    def _phase(self, stage: str) -> str:
        return "pre-train" if stage == "pretrain" else f"fine-tune {stage}"

    def _write(self, where: Where, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.last_write < WRITE_EVERY:
            return
        self.last_write = now
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{FILE}.{os.getpid()}")
            tmp.write_text(json.dumps({"phase": where.phase, "step": where.step, "total": where.total}))
            os.replace(tmp, self.path)
        except OSError:  # progress is a courtesy: never fail a trial over it
            pass

    def on_stage_start(self, stage, total_steps=None):
        self.total[stage] = int(total_steps or 0)
        self._write(Where(self._phase(stage), 0, self.total[stage]), force=True)

    def on_step(self, stage, step, metrics):
        self._write(Where(self._phase(stage), int(step), self.total.get(stage, 0)))

    def on_eval(self, stage, step, metrics):
        self._write(Where(f"{self._phase(stage)} eval", int(step), self.total.get(stage, 0)), force=True)

    def on_end(self, stage, metrics):
        self._write(Where(f"{self._phase(stage)} done", self.total.get(stage, 0), self.total.get(stage, 0)),
                    force=True)


def read(path: Path) -> Where | None:
    try:
        data = json.loads(Path(path).read_text())
        return Where(str(data["phase"]), int(data.get("step", 0)), int(data.get("total", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fit(text: str, width: int = WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def duration(seconds: float) -> str:
    """95 -> "1m35s", 4000 -> "1h07m"."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class Counts:
    """The study's state for the status line."""

    total: int
    done: int = 0
    running: int = 0
    failed: int = 0
    eta: float | None = None  # seconds

    def text(self) -> str:
        eta = f", ~{duration(self.eta)} left" if self.eta is not None else ""
        return f"{self.done}/{self.total} done, {self.running} running, {self.failed} failed{eta}"


def estimate_left(finished_seconds: list[float], remaining: int, slots: int) -> float | None:
    """Time left: the mean trial time so far, times the trials left, over the trials that run at once."""
    if not finished_seconds or remaining <= 0:  # nothing to go on, or nothing left to estimate
        return None
    return sum(finished_seconds) / len(finished_seconds) * math.ceil(remaining / max(1, slots))


def study_callback(total: int, skipped: int, metric: str, labels: Mapping[str, str], folders: Mapping[str, Path],
                   live: bool | None = None, say: Callable[[str], None] = print):
    """The Tune callback that shows a study's progress (see the module docstring). `labels`: trial id ->
    its short name; `folders`: trial id -> the folder its TrialProgress writes in."""
    from ray import tune

    class StudyProgress(tune.Callback):
        def __init__(self):
            self.running: dict[str, float] = {}  # trial id -> start time
            self.done, self.failed, self.pruned = set(), set(), set()
            self.errors: dict[str, str] = {}  # trial id -> what Tune says went wrong
            self.last: dict[str, dict] = {}
            self.where: dict[str, Where] = {}
            self.seconds: list[float] = []
            self.slots = 1
            self.last_poll = 0.0
            self.live = sys.stdout.isatty() if live is None else live
            self._panel: Panel | None = None

        @property
        def panel(self) -> Panel | None:
            """Opened at the first event: Tune pickles its callbacks first, and a live display does not pickle."""
            if self.live and self._panel is None:
                self._panel = Panel()
            return self._panel

        def __getstate__(self):
            return {**self.__dict__, "_panel": None}

        def _id(self, trial) -> str:
            return trial.config["trial"]["trial_id"]

        def counts(self) -> Counts:
            finished = len(self.done) + len(self.pruned) + skipped
            left = total - finished - len(self.failed)
            return Counts(total, finished, len(self.running), len(self.failed),
                          estimate_left(self.seconds, left, self.slots))

        def event(self, text: str) -> None:
            line = fit(f"[{time.strftime('%H:%M:%S')}] {self.counts().text()} | {text}")
            if self.panel is not None:
                self.panel.log(line)
                self.refresh()
            else:
                say(line)

        def refresh(self) -> None:
            if self.panel is not None:
                rows = [(labels[t], self.where.get(t), time.monotonic() - s) for t, s in self.running.items()]
                self.panel.show(self.counts().text(), rows)

        def on_trial_start(self, iteration, trials, trial, **info):
            tid = self._id(trial)
            self.running[tid] = time.monotonic()
            self.slots = max(self.slots, len(self.running))
            self.event(f"started {labels[tid]}")

        def on_step_end(self, iteration, trials, **info):
            now = time.monotonic()
            if now - self.last_poll < POLL_EVERY:
                return
            self.last_poll = now
            for tid in list(self.running):
                where = read(Path(folders[tid]) / FILE)
                if where is None or where == self.where.get(tid):
                    continue
                before = self.where.get(tid)
                self.where[tid] = where
                if self.panel is None and (before is None or before.stage != where.stage):
                    self.event(f"{labels[tid]}: {where.text()}")  # off a terminal: stage changes only
            self.refresh()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.last[self._id(trial)] = result

        def on_trial_complete(self, iteration, trials, trial, **info):
            tid = self._id(trial)
            self.seconds.append(time.monotonic() - self.running.pop(tid, time.monotonic()))
            if self.last.get(tid, {}).get("phase") != "test":
                self.pruned.add(tid)  # stopped by the scheduler before its test evaluation
                self.event(f"stopped early {labels[tid]}")
            else:
                self.done.add(tid)
                value = self.last[tid].get(metric)
                shown = f"{value:.1f}" if isinstance(value, float) and math.isfinite(value) else "-"
                self.event(f"finished {labels[tid]}: {metric.split('/')[-1]} {shown}")

        def on_trial_error(self, iteration, trials, trial, **info):
            from ablations.runner import tune_error

            tid = self._id(trial)
            self.running.pop(tid, None)
            self.failed.add(tid)
            self.errors[tid] = tune_error(trial)
            self.event(f"FAILED {labels[tid]}: {self.errors[tid]}")

        def on_experiment_end(self, trials, **info):
            if self._panel is not None:
                self._panel.stop()
                self._panel = None

    return StudyProgress()


class Panel:
    """The live display on a terminal: the study's status line and one row per running trial, redrawn
    in place (rich), with events printed above it."""

    def __init__(self):
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self.live = Live(console=self.console, refresh_per_second=2, transient=True)
        self.live.start()

    def log(self, line: str) -> None:
        self.live.console.print(fit(line, min(WIDTH, self.console.width)), markup=False, highlight=False)

    def show(self, status: str, rows: list[tuple[str, Where | None, float]]) -> None:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(show_edge=False, box=None, pad_edge=False)
        for column in ("running trial", "stage", "elapsed"):
            table.add_column(column, no_wrap=True, overflow="ellipsis")
        for label, where, elapsed in rows:
            table.add_row(label, where.text() if where else "starting", duration(elapsed))
        self.live.update(Group(Text(fit(status), style="bold"), table))

    def stop(self) -> None:
        self.live.stop()
