"""Run a study's trials on Ray Tune, tracked in MLflow, and summarise them.

    run_study(spec, spec_text, workdir=..., tracking_uri=...)

0. Joins (or starts) Ray and checks that one trial fits a node of it (`ablations.cluster`),
   before anything is written.
1. Opens the experiment, marks runs a dead process left RUNNING as KILLED,
   and skips trials that already finished (by trial id).
2. Opens this invocation's study run, then Tune runs the remaining trials
   (`ablations.trial.run_trial`) with the study's resources per trial. Fixed seeds are a
   grid; adaptive seeds are a race (`ablations.sequential`) that a Tune searcher
   (`ablations.seed_search`) feeds round by round, rebuilt from MLflow on a re-run.
3. Closes what Tune left open (ASHA stops, Ctrl-C), prints the results table and the
   verdicts (each setting against the leader, logged as decisions.json), builds the
   dashboard and logs it on the study run.
"""

from __future__ import annotations

import math
import os
import re
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ablate_common.naming import factor_aliases, run_name
from ablate_common.tables import render_table
from ablations import console, faults, tracking
from ablations.cluster import ClusterUnreachable, check_address, require_resources
from ablations.distributed import trial_request, trials_that_fit
from ablations.lock import study_lock
from ablations.progress import study_callback
from ablations.sequential import Race
from ablations.spec import StudySpec
from ablations.study import Trial, expand, format_value, short_path
from ablations.study_run import dashboard, next_steps, open_experiment, open_study_run, say
from ablations.trial import StudyContext, run_trial, work_paths
from ablations.verdicts import DECISIONS, Decision, decide, decisions_json, setting_key, study_values, verdict_table


@dataclass
class Outcome:
    """What one invocation did."""

    study_run_id: str
    experiment_id: str
    skipped: int
    ran: int
    failed: list[str] = field(default_factory=list)  # trial ids that failed in any invocation
    finished: int = 0
    interrupted: bool = False  # Ctrl-C or a lost driver cut the invocation short
    dashboard: Path | None = None
    decisions: list[Decision] = field(default_factory=list)  # each setting against the leader
    stop_reason: str | None = None  # adaptive seeds: why the race ended (ablations.verdicts.STOP_REASONS)


@dataclass
class SeedRace:
    """Adaptive seeds: the race, every trial it may run, and what the budget is measured with."""

    race: Race
    trials: dict[tuple[int, int], Trial]  # (setting index, seed) -> trial, seeds 0..max-1
    durations: list[float] = field(default_factory=list)  # seconds of each finished trial
    started: float = field(default_factory=time.monotonic)
    budget_seconds: float | None = None
    slots: int = 1  # trials side by side

    def afford(self, n_trials: int) -> bool:
        """Does a round of n more trials fit the budget? Estimated from the trials so far."""
        if self.budget_seconds is None or not self.durations:
            return True
        per_trial = statistics.mean(self.durations)
        needed = math.ceil(n_trials / max(1, self.slots)) * per_trial
        return time.monotonic() - self.started + needed <= self.budget_seconds


# --------------------------------------------------------------------------- Ray


def connect_ray(address: str | None, plugins=()) -> bool:
    """Join `address` / RAY_ADDRESS, or start a local Ray on this machine's cores.
    Returns True when this call started the session (so we shut it down after).
    `plugins`: plugin modules shipped with the job to every worker and checked on every node
    (`ablations.plugins`); a node that cannot import them stops the study before any trial."""
    import ray

    from ablations.plugins import check_nodes, py_modules

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        check_address(address)  # Ray itself would retry an address nobody answers at for minutes
    if ray.is_initialized():
        check_nodes(plugins)  # the caller's session: it must already carry them
        return False
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # trials keep our cwd; we use absolute paths anyway
    runtime_env = {"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"},
                   **({"py_modules": py_modules(plugins)} if plugins else {})}
    on_sigterm = signal.getsignal(signal.SIGTERM)
    quiet = console.ray_init_options()
    if address:
        try:
            ray.init(address=address, runtime_env=runtime_env, **quiet)
        except ConnectionError as error:  # something answers there, but not a Ray cluster's head
            raise ClusterUnreachable(f"no Ray cluster at {address}: {error}") from None
    else:
        # "local": a new Ray of our own, even when a `ray start` cluster on this machine is the latest one
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, runtime_env=runtime_env, **quiet)
    if callable(on_sigterm) and threading.current_thread() is threading.main_thread():
        # ray.init replaces a SIGTERM handler with its own, which exits (or aborts) at once and
        # leaves the runs RUNNING; the CLI's stops the study as Ctrl-C does, and shuts Ray down after
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        check_nodes(plugins)
    except BaseException:
        ray.shutdown()
        raise
    return True


def shared_cache_root(storage: str | None) -> str | None:
    """<storage>/cache when `storage` is a folder (a plain path or file://); None (the work
    directory's cache) for a remote URI such as s3://, where file locks cannot work."""
    if not storage:
        return None
    if "://" in storage and not storage.startswith("file://"):
        say(f"note: --storage {storage} is not a folder; each node keeps its own pre-train cache")
        return None
    return str(Path(storage.removeprefix("file://")) / "cache")


def tune_error(trial) -> str:
    """What went wrong in a Tune trial, in one line: the trial's own exception (a RayTaskError
    wraps it as `cause`), else the last exception line of its error.txt; a worker that died
    says so."""
    found, error = None, None
    for read in (lambda: _unpickle(trial.pickled_error_file), trial.get_pickled_error):  # local file, then storage
        try:
            error = read()
        except Exception:  # noqa: BLE001 - not written yet, or a class that does not unpickle here
            continue
        if error is not None:
            break
    if error is not None:
        cause = getattr(error, "cause", None) or error
        first = (str(cause).strip().splitlines() or [""])[0]
        found = f"{type(cause).__name__}: {first}"
    else:
        try:
            text = Path(trial.error_file).read_text() if trial.error_file else ""
        except OSError:
            text = ""
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("Failure #")]
        found = next((ln for ln in reversed(lines) if re.match(r"^[\w.]+(Error|Exception|Exit)\b", ln)), None)
        if found is None and "died unexpectedly" in text:  # a RayActorError's text has no class name
            found = next(ln for ln in lines if "died unexpectedly" in ln)
    if found is None:
        return "the trial failed in Ray (see error.txt under the work directory's ray/ folder)"
    if "ActorDied" in found or "WorkerCrashed" in found or "died unexpectedly" in found:
        found = f"the trial's worker process died (killed or crashed): {found}"
    return tracking.redact_text(found)


def _unpickle(path: str | None):
    if not path:
        return None
    import cloudpickle

    with open(path, "rb") as handle:
        return cloudpickle.load(handle)


def _scheduler(spec: StudySpec):
    if spec.scheduler.name != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    s = spec.scheduler
    return ASHAScheduler(time_attr="training_iteration", max_t=s.max_t, grace_period=s.grace_period,
                         reduction_factor=s.reduction_factor)


def _tune(spec: StudySpec, todo: list[Trial], study: StudyContext, workdir: Path, max_concurrent: int | None,
          total: int, skipped: int, storage: str | None = None, seeds: SeedRace | None = None):
    """Run `todo` on Tune; returns ({errored trial id: error}, pruned trial ids, interrupted?).
    `seeds`: adaptive seeds; a searcher then picks from `todo` (every trial the race may run)."""
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress line replaces Tune's tables
    aliases = factor_aliases(spec.factor_paths, spec.alias)
    labels = {t.trial_id: run_name(t.factors, t.seed, aliases) for t in todo}  # as in the MLflow runs table
    folders = {t.trial_id: work_paths(workdir, spec.name, t.trial_id)["trial"] for t in todo}
    progress = study_callback(total, skipped, spec.metric.name, labels, folders, say=say)
    # The study context (tracking URI, work directory) goes through Ray's object store, not the
    # param space: Tune writes the param space to params.json in its storage, and a tracking URI
    # may carry a password.
    resources = spec.resources.model_dump()
    trainable = tune.with_resources(tune.with_parameters(run_trial, study=study), trial_request(resources))
    parallel = spec.resources.workers > 1
    if parallel and not max_concurrent:
        # a data-parallel trial reserves almost nothing itself (its workers do, when they start):
        # start only as many as the cluster has workers' CPUs / GPUs for (Ray Train's guide)
        import ray

        max_concurrent = trials_that_fit(resources, ray.cluster_resources())
    searcher = None
    if seeds is not None:
        from ablations.seed_search import SeedSearcher

        searcher = SeedSearcher(seeds.race, seeds.trials, spec.metric.name, spec.metric.mode, seeds.afford,
                                seeds.durations.append)
    param_space = {} if searcher else {"trial": tune.grid_search([t.to_payload() for t in todo])}
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=spec.metric.name, mode=spec.metric.mode, scheduler=_scheduler(spec),
                                    search_alg=searcher, num_samples=-1 if searcher else 1,  # the race says when
                                    max_concurrent_trials=max_concurrent,
                                    # a new trial skips re-importing torch and the model; a data-parallel
                                    # trial's process ends with it (and takes its Ray Train workers along)
                                    reuse_actors=not parallel),
        run_config=tune.RunConfig(name=spec.name, storage_path=storage or str(workdir / "ray"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0), callbacks=[progress]),
    )
    interrupted = False
    try:
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    if seeds is not None:  # the race ends by itself (stop_reason), or was cut short
        return progress.errors, progress.pruned, interrupted or seeds.race.stop_reason is None
    interrupted = interrupted or len(progress.done | progress.failed | progress.pruned) < len(todo)
    return progress.errors, progress.pruned, interrupted


# --------------------------------------------------------------------------- the study


def run_study(spec: StudySpec, trials: list[Trial], spec_text: str, *, workdir: Path, tracking_uri: str,
              max_concurrent: int | None = None, address: str | None = None, retry_failed: bool = False,
              storage: str | None = None, budget_minutes: float | None = None) -> Outcome:
    """`storage`: a path or URI every node of a cluster reaches (Tune's storage_path); when it is a
    path, the caches live there too (<storage>/cache) so trials on other nodes share pre-trainings.
    `budget_minutes` (adaptive seeds): no new round once it would end after this many minutes."""
    workdir = Path(workdir).absolute()
    # the cluster first: an address nobody answers at, or a trial no node can hold, is refused
    # before anything is written
    started = connect_ray(address, list(dict.fromkeys(m for t in trials for m in t.plugins)))
    try:
        require_resources(spec.resources.model_dump(), say)
        workdir.mkdir(parents=True, exist_ok=True)
        with study_lock(workdir, spec.name):  # a second `ablate run` of this study fails here (StudyLocked)
            return _run_study(spec, trials, spec_text, workdir, tracking_uri, max_concurrent, retry_failed, storage,
                              budget_minutes)
    finally:
        if started:
            import ray

            ray.shutdown()


def seed_race(spec: StudySpec, runs: dict, done: set[str], budget_minutes: float | None,
              slots: int) -> SeedRace:
    """The race of an adaptive study, continued from the trials that already ended (`done`)."""
    index = {setting_key(combo): i for i, combo in enumerate(spec.combinations())}
    trials = {(index[setting_key(t.factors)], t.seed): t for t in expand(spec, range(spec.max_seeds))}
    race = Race(len(index), spec.seed_plan(), spec.metric.mode)
    durations = []
    for (setting, seed), trial in trials.items():
        if trial.trial_id not in done:
            continue
        run = runs[trial.trial_id]
        value = None
        if run.info.status == "FINISHED" and run.data.tags.get(tracking.PRUNED) != "true":
            value = run.data.metrics.get(spec.metric.name)
            if run.info.end_time and run.info.start_time:
                durations.append((run.info.end_time - run.info.start_time) / 1000)
        race.resume(setting, seed, value)
    budget = None if budget_minutes is None else budget_minutes * 60
    return SeedRace(race, trials, durations, budget_seconds=budget, slots=slots)


def _slots(spec: StudySpec, max_concurrent: int | None) -> int:
    """Trials side by side on this machine, for the budget's estimate."""
    return max_concurrent or max(1, (os.cpu_count() or 1) // max(1, math.ceil(spec.resources.cpu)))


def _run_study(spec: StudySpec, trials: list[Trial], spec_text: str, workdir: Path, tracking_uri: str,
               max_concurrent: int | None, retry_failed: bool, storage: str | None,
               budget_minutes: float | None = None) -> Outcome:
    tracker = tracking.Tracker(tracking_uri)
    experiment_id = open_experiment(tracker, spec.name, workdir)
    done = tracking.completed_trial_ids(tracker, experiment_id, retry_failed)
    seeds = None
    if spec.adaptive:
        seeds = seed_race(spec, tracking.latest_trial_runs(tracker, experiment_id), done, budget_minutes,
                          _slots(spec, max_concurrent))
        race = seeds.race
        if not race.round_open:
            race.advance(seeds.afford)  # the next round, or the race is over
        trials = list(seeds.trials.values())  # the race picks among all of them
        todo = [t for t in trials if t.trial_id not in done] if race.round_open else []
    else:
        todo = [t for t in trials if t.trial_id not in done]
    skipped = len([t for t in trials if t.trial_id in done])

    seeds_param = spec.adaptive.model_dump() if spec.adaptive else spec.seeds
    study_run_id = open_study_run(tracker, experiment_id, spec, spec_text, {
        "profile": spec.profile, "trials": len(trials), "seeds": seeds_param, "tasks": spec.tasks,
        "metric": spec.metric.name, "mode": spec.metric.mode, "scheduler": spec.scheduler.name,
        "factors": spec.factor_paths})
    say(_plan_text(spec, seeds, len(trials), len(todo), skipped, tracking_uri))
    outcome = Outcome(study_run_id, experiment_id, skipped=skipped, ran=len(todo))
    status, errored = "FINISHED", {}
    try:
        if todo:
            study = StudyContext(spec.name, study_run_id, experiment_id, tracking_uri, workdir, spec.metric.name,
                                 resources=spec.resources.model_dump(), cache_root=shared_cache_root(storage),
                                 aliases=factor_aliases(spec.factor_paths, spec.alias),
                                 storage=storage or str(workdir / "ray"),
                                 fault=os.environ.get(faults.ENV) or None)  # test-only: workers do not see our env
            errored, pruned, interrupted = _tune(spec, todo, study, workdir, max_concurrent, len(trials), skipped,
                                                 storage, seeds)
            tracking.close_unfinished_children(tracker, experiment_id, study_run_id, pruned=pruned, errors=errored)
            if interrupted:
                status, outcome.interrupted = "KILLED", True
        _finish(spec, trials, seeds, tracker, workdir, outcome, errored)
    except BaseException:
        status = "KILLED" if isinstance(sys.exc_info()[1], KeyboardInterrupt) else "FAILED"
        tracking.close_unfinished_children(tracker, experiment_id, study_run_id, pruned=())
        raise
    finally:
        tracker.end_run(study_run_id, status)
    return outcome


def _plan_text(spec: StudySpec, seeds: SeedRace | None, n_trials: int, n_todo: int, skipped: int,
               tracking_uri: str) -> str:
    """What this invocation is about to do."""
    where = f"(profile {spec.profile}, MLflow {tracking.redact_uri(tracking_uri)})"
    if seeds is None:
        return f"study {spec.name}: {n_trials} trials, {skipped} already done, {n_todo} to run {where}"
    plan = spec.seed_plan()
    return (f"study {spec.name}: adaptive seeds ({plan.start} to {plan.max} per setting, min_effect "
            f"{plan.min_effect:g}), {skipped} trials already done, "
            + (f"{len(seeds.race.todo())} in this round, at most {n_trials} in all " if n_todo else "nothing to run ")
            + where)


def _finish(spec: StudySpec, trials: list[Trial], seeds: SeedRace | None, tracker: tracking.Tracker, workdir: Path,
            outcome: Outcome, errored: Mapping[str, str]) -> None:
    """The results table, the verdicts, the dashboard and what to do next."""
    say("")
    runs = tracking.latest_trial_runs(tracker, outcome.experiment_id)
    if seeds is not None:  # the trials the race ran, and the first round's even if not run
        trials = [t for (_, seed), t in seeds.trials.items() if t.trial_id in runs or seed < spec.seed_plan().start]
        outcome.ran = len([t for t in trials if t.trial_id in runs]) - outcome.skipped
        outcome.stop_reason = seeds.race.stop_reason
    rows = trial_rows(trials, runs, spec.metric.name, errored)
    outcome.failed = [row.trial.trial_id for row in rows if row.status == "FAILED"]
    outcome.finished = sum(1 for row in rows if row.status == "FINISHED")
    say(summary(spec, rows))
    say("")
    say(_verdicts(spec, trials, runs, tracker, outcome.study_run_id, outcome))
    outcome.dashboard = _dashboard(spec, tracker, outcome.study_run_id, workdir)
    say(_next_steps(spec, workdir, tracker.uri, outcome.dashboard))


@dataclass(frozen=True)
class TrialRow:
    """One trial as the results table shows it."""

    trial: Trial
    status: str  # an MLflow run status, PRUNED, or NOT RUN
    value: float | None  # the headline metric
    seconds: float | None  # pre-training plus fine-tuning
    error: str | None  # why it failed, when it did


def trial_rows(trials: list[Trial], runs: Mapping, metric: str,
               errored: Mapping[str, str] | None = None) -> list[TrialRow]:
    """Each trial's status, headline value and cost from its latest MLflow run (`runs`).
    `errored`: trials Tune saw fail in this invocation, with Tune's error (some fail before their
    MLflow run opens)."""
    errored = errored or {}
    rows = []
    for t in trials:
        run = runs.get(t.trial_id)
        if run is None:
            failed_early = t.trial_id in errored
            error = f"failed before its MLflow run opened: {errored[t.trial_id]}" if failed_early else None
            rows.append(TrialRow(t, "FAILED" if failed_early else "NOT RUN", None, None, error))
            continue
        status = "PRUNED" if run.data.tags.get(tracking.PRUNED) == "true" else run.info.status
        metrics = run.data.metrics
        seconds = metrics.get("cost/pretrain_seconds", 0) + metrics.get("cost/finetune_seconds", 0)
        error = run.data.tags.get(tracking.ERROR, "?") if status == "FAILED" else None
        rows.append(TrialRow(t, status, metrics.get(metric), seconds, error))
    return rows


def summary(spec: StudySpec, rows: list[TrialRow]) -> str:
    """The results table (one row per trial) and the settings ranked by their mean over seeds."""
    from dashboards.summaries import format_number, metric_label, metric_unit

    metric, paths = spec.metric.name, spec.factor_paths
    unit = metric_unit(metric)
    table, by_setting = [], {}
    for row in rows:
        t = row.trial
        table.append([t.trial_id, *[format_value(t.factors[p]) for p in paths], str(t.seed), row.status,
                      "-" if row.value is None else format_number(row.value, unit),
                      "-" if not row.seconds else f"{row.seconds:.0f}s"])
        if row.value is not None and row.status == "FINISHED":
            by_setting.setdefault(tuple(format_value(t.factors[p]) for p in paths), []).append(row.value)
    finished = sum(1 for row in rows if row.status == "FINISHED")
    header = ["trial", *[short_path(p) for p in paths], "seed", "status", metric_label(metric), "time"]
    parts = [f"Results of {spec.name} ({finished}/{len(rows)} finished):", render_table(header, table)]
    if by_setting and paths:
        ranked = sorted(by_setting.items(), key=lambda kv: statistics.mean(kv[1]), reverse=spec.metric.mode == "max")
        means = [[*setting, format_number(statistics.mean(vals), unit),
                  format_number(statistics.stdev(vals), unit) if len(vals) > 1 else "-", str(len(vals))]
                 for setting, vals in ranked]
        parts += ["", f"Settings ranked by mean {metric_label(metric)} over seeds (best first; sd: spread over seeds):",
                  render_table([*[short_path(p) for p in paths], "mean", "sd", "seeds"], means)]
    errors = [f"  {row.trial.trial_id}: {row.error}" for row in rows if row.status == "FAILED"]
    if errors:
        parts += ["", "Failed trials:", *errors]
    return "\n".join(parts)


def _verdicts(spec: StudySpec, trials: list[Trial], runs: dict, tracker: tracking.Tracker, study_run_id: str,
              outcome: Outcome) -> str:
    """Each setting against the leader, logged on the study run as decisions.json; the table to print."""
    outcome.decisions = decide(spec, study_values(spec, trials, runs))
    tracker.log_text(study_run_id, decisions_json(outcome.decisions), DECISIONS)
    return verdict_table(spec, outcome.decisions, outcome.stop_reason)


def _dashboard(spec: StudySpec, tracker: tracking.Tracker, study_run_id: str, workdir: Path) -> Path | None:
    """Build the study's dashboard and log it on the study run as dashboard.html."""
    def build(out: Path) -> Path:
        from dashboards.report import build_report  # plotly and pandas: only once the study has run

        return build_report(spec.name, tracker.uri, out)

    return dashboard(tracker, study_run_id, workdir, spec.name, build)


def _next_steps(spec: StudySpec, workdir: Path, tracking_uri: str, dashboard_file: Path | None) -> str:
    if tracking_uri.startswith("sqlite:"):
        commands = [f"ablate ui --workdir {workdir}          # browse every run in the MLflow UI"]
    else:
        commands = [f"open {tracking.redact_uri(tracking_uri)}   # the MLflow server holding the runs"]
    if dashboard_file is not None:
        commands.append(f"open {dashboard_file}   # the dashboard (also on the study run as dashboard.html)")
    commands.append(f"ablate report {spec.name} --workdir {workdir}   # rebuild the dashboard")
    return next_steps(commands)
