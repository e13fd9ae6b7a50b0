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
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ablations import console, tracking
from ablations.distributed import trial_request, trials_that_fit
from ablations.paths import within
from ablations.search import SearchSpec, build_pruner, build_sampler, distributions, grid_size
from ablations.spec import SpecError, plugin_modules
from ablations.study import Trial, format_value, render_table, short_path, trial_pretrain_key
from m3ae.config import ConfigError
from m3ae.keys import trial_id
from m3ae.train.callbacks import Callback

OPTUNA_TRIAL = "ablate.optuna_trial"  # MLflow tag: the Optuna trial number of a trial run
OPTUNA_STUDY = "ablate.optuna_study"
FINGERPRINT = "ablate.fingerprint"  # Optuna study user attribute
HEARTBEAT_SECONDS = 30  # a trial whose driver has been silent for 2x this is failed and retried
MAX_RETRY = 1
POLL_SECONDS = 2.0


def say(text: str) -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- storage and study


def open_storage(url: str, heartbeat_seconds: int | None = HEARTBEAT_SECONDS):
    """An Optuna RDB storage; with a heartbeat, stale trials are failed and retried once."""
    import optuna

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if heartbeat_seconds is None:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    return optuna.storages.RDBStorage(
        url, engine_kwargs=engine, heartbeat_interval=heartbeat_seconds,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))


def redact(url: str) -> str:
    """A storage URL without its password (it goes into logs and MLflow tags)."""
    from ablations.redact import redact_uri

    return redact_uri(url)


def open_study(spec: SearchSpec, storage, storage_url: str):
    """Create the search's Optuna study, or resume it when it was made by the same search.

    The study is named after the search. A study of that name whose fingerprint
    differs (another space, objectives, profile, base, tasks or seeds) is refused."""
    import optuna

    study = optuna.create_study(storage=storage, study_name=spec.name, directions=spec.directions,
                                sampler=build_sampler(spec), pruner=build_pruner(spec), load_if_exists=True)
    stored = study.user_attrs.get(FINGERPRINT)
    if stored is None and study.trials:
        stored = "(made outside ablate)"
    if stored is not None and stored != spec.fingerprint():
        raise SpecError(
            f"{redact(storage_url)} already holds an Optuna study named {spec.name!r} from a different search "
            f"(fingerprint {stored}, this search {spec.fingerprint()}: the space, objectives, profile, base, tasks "
            f"or seeds changed). Give the search a new name, or delete the old study: "
            f"optuna delete-study --study-name {spec.name} --storage {redact(storage_url)}")
    study.set_user_attr(FINGERPRINT, spec.fingerprint())
    study.set_metric_names(spec.metric_names)
    study.sampler = build_sampler(spec, seed_offset=len(study.trials))
    return study


def retried_numbers(trials) -> set[int]:
    """Numbers of failed trials that a later trial re-runs (their budget passed to the retry)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    return {n for t in trials if (n := RetryHeartbeatStaleTrialCallback.retried_trial_number(t)) is not None}


def budget_used(trials) -> int:
    """Trials that count towards n_trials: finished (complete, pruned), running, and
    failed unless retried. Waiting trials (queued retries, enqueued points) do not count yet."""
    from optuna.trial import TrialState

    retried = retried_numbers(trials)
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(1 for t in trials if t.state in counted or (t.state == TrialState.FAIL and t.number not in retried))


# --------------------------------------------------------------------------- heartbeat


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


# --------------------------------------------------------------------------- the trial (a Ray task)


class PrunedByOptuna(tracking.Pruned):
    """Raised from inside fine-tuning when Optuna's pruner stops the trial."""


class OptunaReporter(Callback):
    """Reports the watched validation metric of one task to the Optuna trial after every
    evaluation, and stops the trial when the pruner says so. Steps count evaluations of
    the whole Optuna trial (seed after seed), so every trial is compared at equal steps."""

    def __init__(self, trial, metric: str):
        self.trial = trial
        self.task, _, self.name = metric.partition("/")
        self.step = 0

    def on_eval(self, stage: str, step: int, metrics: Mapping[str, float]) -> None:
        value = metrics.get(f"val_{self.name}", metrics.get(self.name))
        if stage != self.task or value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), self.step)
        self.step += 1
        if self.trial.should_prune():
            raise PrunedByOptuna(f"pruned by Optuna after {self.step} evaluation(s): "
                                 f"{self.task}/{self.name} {value:.4f}")


def _optuna_trial(request: dict):
    """The Optuna trial object inside a worker: reports and prune decisions go to the shared storage."""
    import optuna

    storage = open_storage(request["storage_url"], heartbeat_seconds=None)
    spec = SearchSpec.model_validate(request["spec"])
    # a random sampler: the worker never samples; it must not spend time fitting TPE
    study = optuna.load_study(study_name=spec.name, storage=storage, pruner=build_pruner(spec),
                              sampler=optuna.samplers.RandomSampler())
    return optuna.Trial(study, request["optuna_trial_id"])


def execute_search_trial(request: dict) -> dict:
    """Run every seed of one Optuna trial (a Ray task). Returns
    {"state": "complete"|"pruned"|"failed", "metrics": mean finals, "run_ids": [...], "error": str}."""
    from ablations.trial import execute

    spec = SearchSpec.model_validate(request["spec"])
    reporter = None
    if spec.watched_metric is not None:
        reporter = OptunaReporter(_optuna_trial(request), spec.watched_metric)
    tags = {OPTUNA_TRIAL: request["number"], OPTUNA_STUDY: spec.name}
    finals, run_ids = [], []
    for payload in request["trials"]:
        trial = Trial.from_payload(payload)
        callbacks = [reporter] if reporter else []
        try:
            result = execute(trial, request["ctx"], callbacks=callbacks, tags=tags, name_prefix=f"t{request['number']}-")
        except tracking.Pruned as stop:
            return {"state": "pruned", "metrics": {}, "run_ids": run_ids, "error": str(stop)}
        except Exception as error:  # noqa: BLE001 - recorded in MLflow by the trial run; told FAIL
            return {"state": "failed", "metrics": {}, "run_ids": run_ids, "error": f"{type(error).__name__}: {error}"}
        finals.append(result.metrics)
        run_ids.append(result.run_id)
    keys = set.intersection(*(set(f) for f in finals))
    return {"state": "complete", "metrics": {k: statistics.fmean(f[k] for f in finals) for k in sorted(keys)},
            "run_ids": run_ids, "error": ""}


# --------------------------------------------------------------------------- the driver


@dataclass
class Pending:
    trial: Any  # optuna.Trial
    key: str  # the trial ids of its seeds: equal keys are the same experiment
    started: float
    ref: Any = None  # the Ray object ref (None: waits for an identical trial to finish)


@dataclass
class SearchOutcome:
    study_run_id: str
    experiment_id: str
    ran: int = 0
    copied: int = 0  # duplicate parameter sets answered from an identical finished trial
    best_study: Path | None = None
    dashboard: Path | None = None
    states: dict[str, int] = field(default_factory=dict)


class Driver:
    """Asks Optuna for trials while the budget and the free slots allow, runs each
    as a Ray task, tells Optuna how it ended. One instance per invocation."""

    def __init__(self, spec: SearchSpec, study, storage_url: str, ctx: dict, n_trials: int,
                 max_concurrent: int, timeout: float | None, heartbeat: Heartbeat):
        import ray

        self.spec, self.study, self.storage_url, self.ctx = spec, study, storage_url, ctx
        self.n_trials, self.max_concurrent, self.timeout = n_trials, max_concurrent, timeout
        self.heartbeat = heartbeat
        self.pending: dict[int, Pending] = {}  # optuna trial number -> pending
        request = trial_request(spec.resources.model_dump())  # data-parallel: the workers reserve the CPUs
        self.remote = ray.remote(execute_search_trial).options(
            num_cpus=request["cpu"], num_gpus=request.get("gpu", 0), max_retries=0,
            **({"memory": request["memory"]} if "memory" in request else {}))
        self.started = time.monotonic()
        self.ran = self.copied = 0
        self.waiting_for_others = False

    # ---- the loop

    def run(self) -> None:
        import optuna

        for point in self.spec.enqueue:
            self.study.enqueue_trial(point, skip_if_exists=True)
        try:
            while True:
                optuna.storages.fail_stale_trials(self.study)
                while self._may_start():
                    self._start_one()
                if not self.pending and (self._timed_out() or not self._others_running()):
                    return
                self._collect()
        except BaseException:
            self._abandon()
            raise

    def _trials(self, states=None):
        return self.study.get_trials(deepcopy=False, states=states)

    def _timed_out(self) -> bool:
        return self.timeout is not None and time.monotonic() - self.started > self.timeout

    def _may_start(self) -> bool:
        running = sum(1 for p in self.pending.values() if p.ref is not None)
        return not self._timed_out() and running < self.max_concurrent and budget_used(self._trials()) < self.n_trials

    def _others_running(self) -> bool:
        """Trials another driver (or a dead one, not yet stale) holds: wait for them, so a
        resumed search ends with n_trials done; a dead driver's trials go stale and are retried here."""
        from optuna.trial import TrialState

        mine = {p.trial.number for p in self.pending.values()}
        others = [t.number for t in self._trials((TrialState.RUNNING,)) if t.number not in mine]
        if others and not self.waiting_for_others:
            grace = 2 * (self.heartbeat.seconds or 0)
            say(f"waiting for trial(s) {others}, held by another driver; if that driver died, they are failed "
                f"and retried here once their heartbeat is {grace}s old")
        self.waiting_for_others = bool(others)
        return bool(others)

    def _start_one(self) -> None:
        with warnings.catch_warnings():  # we run the heartbeat ourselves (Heartbeat), not Study.optimize
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask(distributions(self.spec))
        self.heartbeat.add(trial._trial_id)
        params = dict(trial.params)
        pending = Pending(trial, "", time.monotonic())
        self.pending[trial.number] = pending
        try:
            trials = [self._trial(params, seed) for seed in self.spec.seeds]
        except ConfigError as error:  # dimensions valid alone, invalid together (recon layer > layers)
            self._tell(pending, {"state": "failed", "metrics": {}, "run_ids": [], "error": f"invalid config: {error}"})
            return
        pending.key = "+".join(t.trial_id for t in trials)
        key = pending.key
        trial.set_user_attr("ablate.trial_ids", [t.trial_id for t in trials])
        original = self._finished_twin(key, trial.number)
        if original is not None:
            self._tell_copy(pending, original)
            return
        if any(p.key == key and p.ref is not None for p in self.pending.values()):
            say(f"trial {trial.number}: same parameters as a running trial; waits for its result")
            return
        request = {"spec": self.spec.model_dump(), "storage_url": self.storage_url, "number": trial.number,
                   "optuna_trial_id": trial._trial_id, "ctx": self.ctx, "trials": [t.to_payload() for t in trials]}
        pending.ref = self.remote.remote(request)
        self.ran += 1
        say(f"[{time.strftime('%H:%M:%S')}] trial {trial.number} started: {_params_text(params)}")

    def _trial(self, params: dict, seed: int) -> Trial:
        cfg = self.spec.config(params, seed)
        return Trial(trial_id(cfg), seed, dict(params), cfg, trial_pretrain_key(cfg, self.spec.resources.workers),
                     plugin_modules(self.spec))

    def _finished_twin(self, key: str, number: int):
        """A complete or pruned trial of this study with the same resolved configs."""
        from optuna.trial import TrialState

        for t in self._trials((TrialState.COMPLETE, TrialState.PRUNED)):
            if t.number != number and "+".join(t.user_attrs.get("ablate.trial_ids", [])) == key:
                return t
        return None

    def _collect(self) -> None:
        """Wait for one running trial to end (or a poll interval), and tell Optuna."""
        import ray

        refs = {p.ref: n for n, p in self.pending.items() if p.ref is not None}
        if not refs:
            time.sleep(POLL_SECONDS)
            return
        done, _ = ray.wait(list(refs), num_returns=1, timeout=POLL_SECONDS)
        for ref in done:
            pending = self.pending[refs[ref]]
            try:
                result = ray.get(ref)
            except Exception as error:  # noqa: BLE001 - the worker died (OOM, node lost): the trial failed
                result = {"state": "failed", "metrics": {}, "run_ids": [], "error": f"{type(error).__name__}: {error}"}
            self._tell(pending, result)
            for twin in [p for p in self.pending.values() if p.key == pending.key and p.ref is None]:
                self._tell_copy(twin, self.study.get_trials(deepcopy=False)[pending.trial.number])

    def _tell(self, pending: Pending, result: dict) -> None:
        from optuna.trial import TrialState

        trial, spent = pending.trial, time.monotonic() - pending.started
        trial.set_user_attr("mlflow_run_ids", result["run_ids"])
        if result["run_ids"]:
            trial.set_user_attr("mlflow_run_id", result["run_ids"][0])
        state = result["state"]
        if state == "complete":
            values = [result["metrics"].get(m, float("nan")) for m in self.spec.metric_names]
            if all(math.isfinite(v) for v in values):
                trial.set_user_attr("metrics", result["metrics"])
                self.study.tell(trial, values)
                say(f"[{time.strftime('%H:%M:%S')}] trial {trial.number} complete in {spent:.0f}s: "
                    + ", ".join(f"{m} {_value(m, v)}" for m, v in zip(self.spec.metric_names, values)))
                self._forget(pending)
                return
            state, result["error"] = "failed", f"an objective is missing or not finite: {values}"
        if state == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
            say(f"[{time.strftime('%H:%M:%S')}] trial {trial.number} pruned after {spent:.0f}s ({result['error']})")
        else:
            trial.set_user_attr("error", result["error"][:1000])
            self.study.tell(trial, state=TrialState.FAIL)
            say(f"[{time.strftime('%H:%M:%S')}] trial {trial.number} FAILED: {result['error']}")
        self._forget(pending)

    def _tell_copy(self, pending: Pending, original) -> None:
        """Answer a duplicate parameter set from its identical trial instead of running it again."""
        from optuna.trial import TrialState

        trial = pending.trial
        trial.set_user_attr("ablate.duplicate_of", original.number)
        if original.state == TrialState.COMPLETE:
            trial.set_user_attr("metrics", original.user_attrs.get("metrics", {}))
            self.study.tell(trial, original.values)
        else:
            self.study.tell(trial, state=original.state)
        self.copied += 1
        say(f"trial {trial.number}: same configs as trial {original.number}; "
            f"{original.state.name.lower()} result reused, nothing re-run")
        self._forget(pending)

    def _forget(self, pending: Pending) -> None:
        self.heartbeat.remove(pending.trial._trial_id)
        self.pending.pop(pending.trial.number, None)

    def _abandon(self) -> None:
        """Interrupted: cancel the Ray tasks, fail their trials and queue them again, so the
        next invocation re-runs them (their budget passes to the retry)."""
        import optuna
        import ray
        from optuna.trial import TrialState

        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)
        for pending in list(self.pending.values()):
            if pending.ref is not None:
                ray.cancel(pending.ref, force=False)
            try:
                frozen = self.study.tell(pending.trial, state=TrialState.FAIL, skip_if_finished=True)
                retry(self.study, copy.deepcopy(frozen))
            except Exception as error:  # noqa: BLE001 - the heartbeat retries it later anyway
                say(f"(trial {pending.trial.number} not re-queued: {error})")
            self._forget(pending)


def _params_text(params: Mapping[str, Any]) -> str:
    return " ".join(f"{short_path(p)}={_fmt(v)}" for p, v in params.items())


def _label(metric: str) -> str:
    from dashboards.summaries import metric_label

    return metric_label(metric)


def _value(metric: str, value: float) -> str:
    """An objective's value at its unit's precision ("52.3" for an accuracy in percent)."""
    from dashboards.summaries import format_number, metric_unit

    return format_number(value, metric_unit(metric))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return format_value(value)


# --------------------------------------------------------------------------- the search


def default_storage(workdir: Path) -> str:
    """sqlite in the work directory, absolute so every process opens the same file."""
    return f"sqlite:///{Path(workdir).absolute() / 'optuna.db'}"


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
    experiment_id = tracker.experiment(spec.name, workdir / "artifacts")
    stale = tracking.mark_stale_runs(tracker, experiment_id)
    if stale:
        say(f"marked {stale} MLflow run(s) left RUNNING by an earlier, dead invocation as KILLED")
    # spec.yaml: the search as it ran (profile and data root applied); study.yaml: the file as written
    resolved = yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)
    study_run_id = tracking.open_study_run(tracker, experiment_id, spec.name, resolved, {
        "profile": spec.profile, "n_trials": n_trials, "seeds": spec.seeds, "tasks": spec.tasks,
        "objectives": [f"{o.metric} ({o.direction})" for o in spec.objectives], "sampler": spec.sampler.name,
        "pruner": spec.pruner.name, "space": list(spec.space)})
    tracker.log_text(study_run_id, spec_text, "study.yaml")
    tracker.set_tags(study_run_id, {"ablate.search": "true", OPTUNA_STUDY: spec.name,
                                    "ablate.optuna_storage": redact(storage_url)})
    outcome = SearchOutcome(study_run_id, experiment_id)
    done_before = budget_used(study.trials)
    running = sum(1 for t in study.trials if t.state.name == "RUNNING")
    say(f"search {spec.name}: {done_before} of {n_trials} trials already in the study"
        + (f" ({running} of them running elsewhere)" if running else "")
        + f", {max(0, n_trials - done_before)} to go (profile {spec.profile}, sampler {spec.sampler.name}, "
        f"pruner {spec.pruner.name}; Optuna {redact(storage_url)}; MLflow {redact(tracking_uri)})")
    ctx = {"study_name": spec.name, "study_run_id": study_run_id, "experiment_id": experiment_id,
           "tracking_uri": tracking_uri, "workdir": str(workdir), "metric": spec.objectives[0].metric,
           "cache_root": cache_root, "resources": spec.resources.model_dump()}
    status = "FINISHED"
    try:
        with Heartbeat(storage, heartbeat_seconds) as heartbeat:
            driver = Driver(spec, study, storage_url, ctx, n_trials, _slots(spec, max_concurrent),
                            spec.timeout, heartbeat)
            driver.run()
        outcome.ran, outcome.copied = driver.ran, driver.copied
        say("")
        say(summary(spec, study))
        outcome.states = state_counts(study)
        try:
            outcome.best_study = write_best_study(spec, study, workdir)
        except SpecError as error:  # the trials are safe in Optuna and MLflow; say why the file is missing
            say(f"(best_study.yaml not written: {error})")
        if outcome.best_study is not None:
            tracker.log_file(study_run_id, outcome.best_study)
        outcome.dashboard = _dashboard(spec, tracker, study_run_id, storage_url, workdir)
        say(_next_steps(spec, workdir, storage_url, outcome))
    except BaseException:
        status = "KILLED" if isinstance(sys.exc_info()[1], KeyboardInterrupt) else "FAILED"
        raise
    finally:
        tracking.close_unfinished_children(tracker, experiment_id, study_run_id, pruned=())
        tracker.end_run(study_run_id, status)
    return outcome


# --------------------------------------------------------------------------- the end


def state_counts(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def best_trials(study) -> list:
    """The best trial (one objective) or the Pareto front (several), best first."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: t.number)


def summary(spec: SearchSpec, study) -> str:
    """The end table: the best trial or the Pareto front, then the state of every trial."""
    counts = state_counts(study)
    parts = [f"Search {spec.name}: {len(study.trials)} trials ("
             + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) + ")"]
    best = best_trials(study)
    if not best:
        parts.append("no trial completed: no best trial yet")
    else:
        title = "Best trial" if len(spec.objectives) == 1 else f"Pareto front ({len(best)} trials)"
        parts += ["", f"{title}:", _trial_table(spec, best)]
    failed = [t for t in study.trials if t.state.name == "FAIL" and t.user_attrs.get("error")]
    if failed:
        parts += ["", "Failed trials:", *[f"  {t.number}: {t.user_attrs['error']}" for t in failed]]
    return "\n".join(parts)


def _trial_table(spec: SearchSpec, trials) -> str:
    paths = list(spec.space)
    header = ["trial", *[short_path(p) for p in paths], *[_label(m) for m in spec.metric_names], "MLflow run"]
    rows = [[str(t.number), *[_fmt(t.params.get(p)) for p in paths],
             *[_value(m, v) for m, v in zip(spec.metric_names, t.values)],
             t.user_attrs.get("mlflow_run_id") or f"(= trial {t.user_attrs.get('ablate.duplicate_of', '?')})"]
            for t in trials]
    return render_table(header, rows)


def best_study_text(spec: SearchSpec, study) -> str | None:
    """The best trial (or the Pareto front, zipped) as a grid study with more seeds, ready for `ablate run`."""
    best = best_trials(study)
    if not best:
        return None
    unique: dict[tuple, Any] = {}
    for t in best:  # a duplicate's copy sits on the front beside its original: keep the original
        unique.setdefault(tuple(repr(t.params[p]) for p in spec.space), t)
    best = list(unique.values())
    paths = list(spec.space)
    values = {p: [t.params[p] for t in best] for p in paths}
    if len(best) == 1 or len(paths) == 1:
        factors = {p: list(dict.fromkeys(v)) for p, v in values.items()}
    else:  # the front's points vary together, not as a grid
        factors = {"zip": [values]}
    seeds = sorted(set(spec.seeds) | {max(spec.seeds) + 1, max(spec.seeds) + 2})
    which = f"trial {best[0].number}" if len(best) == 1 else f"the Pareto front (trials {[t.number for t in best]})"
    study_spec = spec.as_study(factors, seeds=seeds, name=f"{spec.name}_best",
                               description=f"{which} of the search {spec.name}, re-run with seeds {seeds}")
    if study_spec.num_trials() > study_spec.max_trials:  # a wide front: raise the study's guard to fit it
        study_spec = study_spec.model_copy(update={"max_trials": study_spec.num_trials()})
    data = study_spec.model_dump(exclude_defaults=True)
    data.pop("profile", None)  # always written: the best setting is only best at its profile
    data = {"name": data.pop("name"), "kind": "study", "profile": spec.profile, **data}
    results = ["#   trial {}: {}\n".format(t.number, ", ".join(f"{m} {_value(m, v)}"
                                                  for m, v in zip(spec.metric_names, t.values)))
               for t in best]
    header = (f"# Written by `ablate search` from {which} of the Optuna study {spec.name!r}\n"
              + "".join(results) + "# Run it: ablate run <this file>\n")
    return header + yaml.safe_dump(data, sort_keys=False)


def write_best_study(spec: SearchSpec, study, workdir: Path) -> Path | None:
    """<workdir>/searches/<name>/best_study.yaml, checked by the study loader before it is kept."""
    from ablations.spec import parse_spec

    text = best_study_text(spec, study)
    if text is None:
        return None
    out = within(Path(workdir), "searches", spec.name, "best_study.yaml")
    parse_spec(text, str(out))  # the file must be a valid study as written
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return out


def _dashboard(spec: SearchSpec, tracker: tracking.Tracker, study_run_id: str, storage_url: str,
               workdir: Path) -> Path | None:
    """The search dashboard (dashboards.report.build_search_report), logged as dashboard.html."""
    try:
        from dashboards.report import build_search_report
        from dashboards.screenshot import log_top
    except ImportError:
        say("(dashboard skipped: dashboards.report.build_search_report is not available)")
        return None
    out = within(workdir, "reports", f"{spec.name}.html")
    try:
        path = Path(build_search_report(spec.name, tracker.uri, storage_url, out, optuna_study_name=spec.name))
        tracker.log_file(study_run_id, path, name="dashboard.html")
        log_top(tracker, study_run_id, path)  # MLflow's sandboxed preview may show the HTML blank
        tracking.link_dashboard(tracker, study_run_id)
        return path
    except Exception as error:  # noqa: BLE001 - a dashboard problem must not lose the search's results
        say(f"(dashboard not built: {type(error).__name__}: {error})")
        return None


def _next_steps(spec: SearchSpec, workdir: Path, storage_url: str, outcome: SearchOutcome) -> str:
    lines = ["", "Next:", f"  optuna-dashboard {redact(storage_url)}   # the Optuna study, live"]
    if outcome.best_study is not None:
        lines.append(f"  ablate run {outcome.best_study} --workdir {workdir}   # the best setting with more seeds")
    if outcome.dashboard is not None:
        lines.append(f"  open {outcome.dashboard}   # the dashboard (also on the study run as dashboard.html)")
    lines.append(f"  ablate ui --workdir {workdir}   # every trial run in the MLflow UI")
    return "\n".join(lines)
