"""What a study and a search do the same way around their trials: open the study run, tell
the user what happens, build the dashboard and say what to do next.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import yaml
from pydantic import BaseModel

from ablations import tracking
from ablations.paths import within


def say(text: str) -> None:
    print(text, flush=True)


def open_experiment(tracker: tracking.Tracker, name: str, workdir: Path, runs: str = "run(s)") -> str:
    """The study's MLflow experiment, with the runs a dead invocation left RUNNING marked KILLED."""
    experiment_id = tracker.experiment(name, workdir / "artifacts")
    stale = tracking.mark_stale_runs(tracker, experiment_id)
    if stale:
        say(f"marked {stale} {runs} left RUNNING by an earlier, dead invocation as KILLED")
    return experiment_id


def open_study_run(tracker: tracking.Tracker, experiment_id: str, spec: BaseModel, spec_text: str,
                   params: dict) -> str:
    """This invocation's study run. spec.yaml: the spec as it runs (profile and defaults resolved);
    study.yaml: the file as written."""
    resolved = yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)
    study_run_id = tracking.open_study_run(tracker, experiment_id, spec.name, resolved, params)
    tracker.log_text(study_run_id, spec_text, "study.yaml")
    return study_run_id


def dashboard(tracker: tracking.Tracker, study_run_id: str, workdir: Path, name: str,
              build: Callable[[Path], str | Path]) -> Path | None:
    """Build the dashboard at <workdir>/reports/<name>.html with `build(out)` and log it on the
    study run as dashboard.html (with a picture of its top and a link in the run's description)."""
    try:
        from dashboards.screenshot import log_top
    except ImportError:
        say("(dashboard skipped: the dashboards package is not available)")
        return None
    out = within(workdir, "reports", f"{name}.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        path = Path(build(out))
        tracker.log_file(study_run_id, path, name="dashboard.html")
        log_top(tracker, study_run_id, path)  # MLflow's sandboxed preview may show the HTML blank
        tracking.link_dashboard(tracker, study_run_id)
        return path
    except Exception as error:  # noqa: BLE001 - a dashboard problem must not lose the results
        say(f"(dashboard not built: {type(error).__name__}: {error})")
        return None


def next_steps(commands: list[str]) -> str:
    """The closing "Next:" block: one command and what it is for per line."""
    return "\n".join(["", "Next:", *[f"  {command}" for command in commands]])
