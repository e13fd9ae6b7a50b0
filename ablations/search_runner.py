"""Run an Optuna search: Optuna decides what to try, Ray runs the trials, MLflow records them.

    run_search(spec, spec_text, workdir=..., storage_url=..., tracking_uri=...)

Why Optuna's ask/tell driving Ray tasks, and not Ray Tune's `OptunaSearch`:
- Pruning must be honest. Tune's schedulers stop trials from the outside and
  `OptunaSearch` then tells Optuna the trial COMPLETEd with its partial value,
  which biases TPE (docs/architecture.md, pitfalls). Here the trial itself reports its validation
  metric to the Optuna storage after every evaluation (`trial.report`), asks
  `trial.should_prune()`, and a pruned trial is told PRUNED.
- Resuming is Optuna's own: the study lives in an RDB storage under the search's
  name and a fingerprint of what a trial means (profile, base, tasks, seeds,
  space, objectives). Re-running the same command resumes it up to `n_trials`
  in total; a study of the same name from a different search is refused, never
  merged. Any number of drivers may share one storage (PostgreSQL on a cluster).
- Crashes are Optuna's heartbeat: the driver records a heartbeat for each
  running trial; a trial whose driver died goes stale, is marked FAIL by the
  next driver (`fail_stale_trials`) and retried once with the same parameters
  (`RetryHeartbeatStaleTrialCallback`).
- Nothing runs twice: a proposed parameter set whose resolved configs equal a
  finished trial's (a repeated categorical or int point) is told that trial's
  result (it counts towards n_trials; `ablate.duplicate_of` says which); enqueued
  points (`enqueue:`) use `enqueue_trial(skip_if_exists=True)`.
- Ray stays what it is best at: placing a trial (a plain remote task asking for
  the search's `resources`) on a free core or node, locally or on a cluster.

A trial is the study runner's trial (same config resolution, same pre-train
cache, same MLflow layout): one MLflow trial run per seed, a child of this
invocation's study run, tagged `ablate.optuna_trial` with the Optuna number and
`ablate.factor.<path>` per searched value. Its objectives are means over seeds.

This module is the entry point; the parts live beside it: `search_storage` (the Optuna
storage, study and budget), `heartbeat`, `search_trial` (the worker side), `search_driver`
(ask, run, tell) and `search_summary` (the end table and best_study.yaml).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ablate_common.redact import redact_uri
from ablations import console, tracking
from ablations.distributed import trials_that_fit
from ablations.heartbeat import Heartbeat
from ablations.search import SearchSpec, grid_size
from ablations.search_driver import Driver
from ablations.search_storage import HEARTBEAT_SECONDS, budget_used, open_storage, open_study
from ablations.search_summary import state_counts, summary, write_best_study
from ablations.search_trial import OPTUNA_STUDY
from ablations.spec import SpecError, plugin_modules
from ablations.study_run import dashboard, next_steps, open_experiment, open_study_run, say
from ablations.trial import StudyContext


@dataclass
class SearchOutcome:
    study_run_id: str
    experiment_id: str
    ran: int = 0
    copied: int = 0  # duplicate parameter sets answered from an identical finished trial
    best_study: Path | None = None
    dashboard: Path | None = None
    states: dict[str, int] = field(default_factory=dict)


def _slots(spec: SearchSpec, max_concurrent: int | None) -> int:
    import ray

    if max_concurrent:
        return max_concurrent
    return trials_that_fit(spec.resources.model_dump(), ray.cluster_resources())


def run_search(spec: SearchSpec, spec_text: str, *, workdir: Path, storage_url: str, tracking_uri: str,
               n_trials: int | None = None, max_concurrent: int | None = None, address: str | None = None,
               heartbeat_seconds: int | None = HEARTBEAT_SECONDS, cache_root: str | None = None) -> SearchOutcome:
    """Run (or resume) the search until the study holds `n_trials` (default: the spec's) trials.
    `cache_root`: a folder every node of a cluster reaches, for the pre-train and data caches."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():  # heartbeat, retry and metric names are "experimental" since Optuna 2.9-3.2
        warnings.simplefilter("ignore", ExperimentalWarning)
        return _run_search(spec, spec_text, workdir, storage_url, tracking_uri, n_trials, max_concurrent, address,
                           heartbeat_seconds, cache_root)


def _run_search(spec: SearchSpec, spec_text: str, workdir: Path, storage_url: str, tracking_uri: str,
                n_trials: int | None, max_concurrent: int | None, address: str | None,
                heartbeat_seconds: int | None, cache_root: str | None = None) -> SearchOutcome:
    from ablations.cluster import require_resources
    from ablations.runner import connect_ray

    console.quiet_optuna()
    workdir = Path(workdir).absolute()
    n_trials = n_trials or spec.n_trials
    if spec.sampler.name == "grid" and n_trials > grid_size(spec):
        say(f"the grid has {grid_size(spec)} points: n_trials {n_trials} -> {grid_size(spec)}")
        n_trials = grid_size(spec)
    # the cluster first: an address nobody answers at, or a trial no node can hold, is refused
    # before anything is written
    started = connect_ray(address, plugin_modules(spec))
    try:
        require_resources(spec.resources.model_dump(), say)
        workdir.mkdir(parents=True, exist_ok=True)
        return _search(spec, spec_text, workdir, storage_url, tracking_uri, n_trials, max_concurrent,
                       heartbeat_seconds, cache_root)
    finally:
        if started:
            import ray

            ray.shutdown()


def _search(spec: SearchSpec, spec_text: str, workdir: Path, storage_url: str, tracking_uri: str, n_trials: int,
            max_concurrent: int | None, heartbeat_seconds: int | None, cache_root: str | None) -> SearchOutcome:
    storage = open_storage(storage_url, heartbeat_seconds)
    study = open_study(spec, storage, storage_url)

    tracker = tracking.Tracker(tracking_uri)
    experiment_id = open_experiment(tracker, spec.name, workdir, runs="MLflow run(s)")
    study_run_id = _open_search_run(spec, spec_text, tracker, experiment_id, storage_url, n_trials)
    outcome = SearchOutcome(study_run_id, experiment_id)
    done_before = budget_used(study.trials)
    running = sum(1 for t in study.trials if t.state.name == "RUNNING")
    say(f"search {spec.name}: {done_before} of {n_trials} trials already in the study"
        + (f" ({running} of them running elsewhere)" if running else "")
        + f", {max(0, n_trials - done_before)} to go (profile {spec.profile}, sampler {spec.sampler.name}, "
        f"pruner {spec.pruner.name}; Optuna {redact_uri(storage_url)}; MLflow {redact_uri(tracking_uri)})")
    context = StudyContext(spec.name, study_run_id, experiment_id, tracking_uri, workdir, spec.objectives[0].metric,
                           resources=spec.resources.model_dump(), cache_root=cache_root)
    status = "FINISHED"
    try:
        with Heartbeat(storage, heartbeat_seconds) as heartbeat:
            driver = Driver(spec, study, storage_url, context, n_trials, _slots(spec, max_concurrent),
                            spec.timeout, heartbeat)
            driver.run()
        outcome.ran, outcome.copied = driver.ran, driver.copied
        _finish(spec, study, tracker, storage_url, workdir, outcome)
    except BaseException:
        status = "KILLED" if isinstance(sys.exc_info()[1], KeyboardInterrupt) else "FAILED"
        raise
    finally:
        tracking.close_unfinished_children(tracker, experiment_id, study_run_id, pruned=())
        tracker.end_run(study_run_id, status)
    return outcome


def _open_search_run(spec: SearchSpec, spec_text: str, tracker: tracking.Tracker, experiment_id: str,
                     storage_url: str, n_trials: int) -> str:
    study_run_id = open_study_run(tracker, experiment_id, spec, spec_text, {
        "profile": spec.profile, "n_trials": n_trials, "seeds": spec.seeds, "tasks": spec.tasks,
        "objectives": [f"{o.metric} ({o.direction})" for o in spec.objectives], "sampler": spec.sampler.name,
        "pruner": spec.pruner.name, "space": list(spec.space)})
    tracker.set_tags(study_run_id, {"ablate.search": "true", OPTUNA_STUDY: spec.name,
                                    "ablate.optuna_storage": redact_uri(storage_url)})
    return study_run_id


def _finish(spec: SearchSpec, study, tracker: tracking.Tracker, storage_url: str, workdir: Path,
            outcome: SearchOutcome) -> None:
    """The end table, best_study.yaml, the dashboard and what to do next."""
    say("")
    say(summary(spec, study))
    outcome.states = state_counts(study)
    try:
        outcome.best_study = write_best_study(spec, study, workdir)
    except SpecError as error:  # the trials are safe in Optuna and MLflow; say why the file is missing
        say(f"(best_study.yaml not written: {error})")
    if outcome.best_study is not None:
        tracker.log_file(outcome.study_run_id, outcome.best_study)
    outcome.dashboard = _dashboard(spec, tracker, outcome.study_run_id, storage_url, workdir)
    say(_next_steps(spec, workdir, storage_url, outcome))


def _dashboard(spec: SearchSpec, tracker: tracking.Tracker, study_run_id: str, storage_url: str,
               workdir: Path) -> Path | None:
    """The search dashboard (dashboards.search_report), logged as dashboard.html."""
    def build(out: Path) -> Path:
        from dashboards.search_report import build_search_report  # plotly and pandas: only once the search has run

        return build_search_report(spec.name, tracker.uri, storage_url, out, optuna_study_name=spec.name)

    return dashboard(tracker, study_run_id, workdir, spec.name, build)


def _next_steps(spec: SearchSpec, workdir: Path, storage_url: str, outcome: SearchOutcome) -> str:
    commands = [f"optuna-dashboard {redact_uri(storage_url)}   # the Optuna study, live"]
    if outcome.best_study is not None:
        commands.append(f"ablate run {outcome.best_study} --workdir {workdir}   # the best setting with more seeds")
    if outcome.dashboard is not None:
        commands.append(f"open {outcome.dashboard}   # the dashboard (also on the study run as dashboard.html)")
    commands.append(f"ablate ui --workdir {workdir}   # every trial run in the MLflow UI")
    return next_steps(commands)
