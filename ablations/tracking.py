"""MLflow tracking: the run layout of docs/architecture.md ("The MLflow contract"), owned end to end.

    experiment  = the study's name
    study run   (ablate.kind=study)   one per `ablate run`; spec.yaml and dashboard.html
      trial run (ablate.kind=trial)   params = the flattened config; final <task>/<metric>, cost/*
        pretrain  (ablate.kind=pretrain)  step curves pretrain/*; reconstruction PNGs
        <task>    (ablate.kind=finetune)  step curves <task>/*

Children point at parents with the `mlflow.parentRunId` tag. Every run ends
FINISHED, FAILED or KILLED; runs a dead process left RUNNING are marked KILLED
by the next invocation (`mark_stale_runs`). Everything goes through
`MlflowClient` with explicit run ids (no fluent "active run" state, which is
per process and would tangle the driver with Ray workers), and metrics are
buffered and written with `log_batch`.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ablate_common.redact import redact_text, redact_uri  # noqa: F401 - redact_uri is part of this module's API
from ablate_common.store import open_client  # noqa: F401 - part of this module's API
from ablations.cli import UsageError

PARENT_TAG = "mlflow.parentRunId"
KIND, STUDY, TRIAL_ID, PRETRAIN_KEY, SEED = "ablate.kind", "ablate.study", "ablate.trial_id", "ablate.pretrain_key", "ablate.seed"
PRETRAIN_RUN_ID, STUDY_RUN_ID, ERROR = "ablate.pretrain_run_id", "ablate.study_run_id", "ablate.error"
FACTOR_PREFIX = "ablate.factor."
PLUGIN_PREFIX = "plugin."  # trial run params: plugin.<module> = <version>+sha256:<hash of its files>
HOST, PID, PRUNED, TASK = "ablate.host", "ablate.pid", "ablate.pruned", "ablate.task"
# MLflow 3's UI opens an experiment in its GenAI view (traces, token usage) unless the experiment
# says it holds model training; this is the tag and value its UI reads for that.
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"

_PARAMS_PER_BATCH = 100  # mlflow: at most 100 params or tags per log_batch
_METRICS_PER_BATCH = 1000  # and 1000 metrics
_MAX_VALUE = 6000  # mlflow's longest param value


def default_tracking_uri(workdir: Path) -> str:
    """sqlite in the work directory, absolute so Ray workers find the same file."""
    return f"sqlite:///{Path(workdir).absolute() / 'mlflow.db'}"


def resolve_tracking_uri(workdir: Path, uri: str | None = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(workdir)


# A tracking server that goes away: every write is retried with backoff for at most this
# many seconds (ABLATE_TRACKING_RETRY_SECONDS), then the trial fails with TrackingUnavailable.
DEFAULT_RETRY_SECONDS = 300.0
# MLflow's own HTTP client retries 7 times with backoff up to minutes and waits 120 s per
# request; ours does the waiting, so each MLflow call gives up quickly (the user's env wins).
MLFLOW_HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                        # set_terminated would print "View run at <server URL>", credentials included
                        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


# At start, a tracking server must accept a connection within this many seconds: the long
# retry above is for a server that goes away in the middle of a study, not for a wrong URI.
PROBE_SECONDS = 5.0


class TrackingUnavailable(RuntimeError):
    """The tracking server did not answer within the retry bound."""


class TrackingUnreachable(UsageError):
    """At start, nothing answers at the tracking URI (exit code 2: nothing was written)."""


def _is_remote(uri: str) -> bool:
    return uri.split(":", 1)[0].lower() in ("http", "https")


def use_short_http_retries() -> None:
    """Let each MLflow HTTP call give up quickly (MLFLOW_HTTP_SETTINGS); the user's environment wins."""
    for name, value in MLFLOW_HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)


def check_reachable(tracking_uri: str, seconds: float = PROBE_SECONDS) -> None:
    """Raise TrackingUnreachable unless a remote tracking server accepts a connection within
    `seconds` (a sqlite store is a local file: nothing to probe)."""
    if not _is_remote(tracking_uri):
        return
    from urllib.parse import urlsplit

    parts = urlsplit(tracking_uri)
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise TrackingUnreachable(f"tracking URI {redact_uri(tracking_uri)}: the port is not a number in "
                                  "0-65535") from None
    if not parts.hostname:
        raise TrackingUnreachable(f"tracking URI {redact_uri(tracking_uri)}: no host (expected http://HOST:PORT)")
    try:
        socket.create_connection((parts.hostname, port), timeout=seconds).close()
    except OSError as error:
        reason = f"no answer within {seconds:.0f} s" if isinstance(error, TimeoutError) else \
            (error.strerror or str(error)).lower()
        raise TrackingUnreachable(
            f"no MLflow tracking server at {redact_uri(tracking_uri)} ({reason}): start it "
            "(`ablate server`), fix --tracking-uri / MLFLOW_TRACKING_URI, or leave both out to track in the "
            "work directory") from None


def _transient(error: BaseException) -> bool:
    """A failure that a server coming back would fix: no connection, a timeout, a 5xx."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(error, (ConnectionError, TimeoutError, requests.exceptions.ConnectionError,
                          requests.exceptions.Timeout)):
        return True
    if isinstance(error, MlflowException):
        text = str(error)
        return ("failed with exception" in text or "failed with timeout" in text or "Max retries exceeded" in text
                or error.error_code in ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED"))
    return False


def tag_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class Tracker:
    """A thin layer over `MlflowClient`: batching, chunking, honest statuses."""

    def __init__(self, tracking_uri: str, retry_seconds: float | None = None):
        self.uri = tracking_uri
        self.remote = _is_remote(tracking_uri)
        if self.remote:
            use_short_http_retries()
        if retry_seconds is None:
            retry_seconds = float(os.environ.get("ABLATE_TRACKING_RETRY_SECONDS", DEFAULT_RETRY_SECONDS))
        self.retry_seconds = retry_seconds
        self.client = open_client(tracking_uri)

    def call(self, what: str, fn: Callable, *args, retry_seconds: float | None = None, **kwargs):
        """`fn(*args, **kwargs)`, retried with backoff (1, 2, 4 .. 15 s) while the tracking server
        is unreachable, for at most `retry_seconds` (default: the tracker's bound; 0 = one try).
        Raises TrackingUnavailable naming the server and the call after that."""
        bound = self.retry_seconds if retry_seconds is None else retry_seconds
        start, delay, attempts = time.monotonic(), 1.0, 0
        while True:
            attempts += 1
            try:
                return fn(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - sorted into transient or not just below
                if not _transient(error):
                    raise
                waited = time.monotonic() - start
                if waited + delay > bound:
                    raise TrackingUnavailable(
                        f"MLflow tracking server {redact_uri(self.uri)} unreachable for {waited:.0f} s "
                        f"({attempts} attempts) while trying to {what}; gave up after the "
                        f"{bound:.0f} s bound (ABLATE_TRACKING_RETRY_SECONDS). Last error: "
                        f"{redact_text(str(error))[:300]}") from error
                time.sleep(delay)
                delay = min(delay * 2, 15.0)

    # ---- experiments and runs

    def experiment(self, name: str, artifact_root: Path | None = None) -> str:
        """The experiment's id, created when missing (two processes may race to create it)."""
        from mlflow.exceptions import MlflowException

        found = self.call("look up experiment", self.client.get_experiment_by_name, name)
        if found is not None:
            if found.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING:  # made by an older version
                self.call("tag experiment", self.client.set_experiment_tag, found.experiment_id, EXPERIMENT_KIND,
                          MODEL_TRAINING)
            return found.experiment_id
        location = (Path(artifact_root) / name).as_uri() if artifact_root and self.uri.startswith("sqlite") else None
        try:
            return self.call("create experiment", self.client.create_experiment, name, artifact_location=location,
                             tags={EXPERIMENT_KIND: MODEL_TRAINING})
        except MlflowException:  # created by someone else in the meantime
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def start_run(self, experiment_id: str, name: str, tags: Mapping[str, Any], parent: str | None = None) -> str:
        tags = {k: tag_value(v) for k, v in tags.items()}
        if parent:
            tags[PARENT_TAG] = parent
        return self.call("create run", self.client.create_run, experiment_id, tags=tags, run_name=name).info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.call(f"end run {run_id}", self.client.set_terminated, run_id, status=status)

    # ---- batched writes

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, tag_value(v)[:_MAX_VALUE]) for k, v in params.items()]
        for i in range(0, len(items), _PARAMS_PER_BATCH):
            self.call("log params", self.client.log_batch, run_id, params=items[i:i + _PARAMS_PER_BATCH])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, tag_value(v)[:_MAX_VALUE]) for k, v in tags.items()]
        for i in range(0, len(items), _PARAMS_PER_BATCH):
            self.call("set tags", self.client.log_batch, run_id, tags=items[i:i + _PARAMS_PER_BATCH])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.write_metrics(run_id, [Metric(k, float(v), now, step) for k, v in metrics.items()])

    def write_metrics(self, run_id: str, metrics: list, retry_seconds: float | None = None) -> None:
        for i in range(0, len(metrics), _METRICS_PER_BATCH):
            self.call("log metrics", self.client.log_batch, run_id, metrics=metrics[i:i + _METRICS_PER_BATCH],
                      retry_seconds=retry_seconds)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.call(f"log {name}", self.client.log_text, run_id, text, name)

    def log_file(self, run_id: str, path: Path, folder: str | None = None, name: str | None = None) -> None:
        """Log a file as an artifact, optionally under another file name."""
        path = Path(path)
        if name is None or name == path.name:
            self.call(f"log {path.name}", self.client.log_artifact, run_id, str(path), folder)
            return
        with tempfile.TemporaryDirectory() as tmp:
            renamed = Path(tmp) / name
            renamed.write_bytes(path.read_bytes())
            self.call(f"log {name}", self.client.log_artifact, run_id, str(renamed), folder)

    # ---- queries

    def runs(self, experiment_id: str, filter_string: str = "") -> list:
        """All runs matching a filter (pages through the results)."""
        found, token = [], None
        while True:
            page = self.call("search runs", self.client.search_runs, [experiment_id], filter_string,
                             max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                return found


# --------------------------------------------------------------------------- the study (driver side)


def open_study_run(tracker: Tracker, experiment_id: str, study_name: str, spec_text: str,
                   params: Mapping[str, Any]) -> str:
    # the experiment names the study: the run's name says when (MLflow's runs table shows ~17 characters)
    run_id = tracker.start_run(experiment_id, f"study {time.strftime('%m-%d %H:%M:%S')}", {
        KIND: "study", STUDY: study_name, HOST: socket.gethostname(), PID: os.getpid()})
    tracker.log_params(run_id, params)
    tracker.log_text(run_id, spec_text, "spec.yaml")
    return run_id


DESCRIPTION = "mlflow.note.content"  # the run's description: markdown on its Overview tab


def dashboard_path(experiment_id: str, run_id: str) -> str:
    """The MLflow UI's route to a study run's dashboard.html, previewed in its Artifacts tab."""
    return f"#/experiments/{experiment_id}/runs/{run_id}/artifacts/dashboard.html"


def link_dashboard(tracker: Tracker, run_id: str) -> None:
    """Put a link to the run's dashboard in its description, one click from its Overview tab."""
    experiment_id = tracker.call("get run", tracker.client.get_run, run_id).info.experiment_id
    tracker.set_tags(run_id, {DESCRIPTION: f"[Open the dashboard]({dashboard_path(experiment_id, run_id)}) "
                                           "(the dashboard.html artifact; dashboard.png is its top as a picture)"})


def latest_trial_runs(tracker: Tracker, experiment_id: str) -> dict[str, Any]:
    """trial id -> its most recent trial run (any invocation of the study)."""
    latest: dict[str, Any] = {}
    for run in tracker.runs(experiment_id, f"tags.`{KIND}` = 'trial'"):
        tid = run.data.tags.get(TRIAL_ID)
        if tid and (tid not in latest or run.info.start_time > latest[tid].info.start_time):
            latest[tid] = run
    return latest


def completed_trial_ids(tracker: Tracker, experiment_id: str, retry_failed: bool = False) -> set[str]:
    """Trials a re-run skips: finished ones, trials ASHA stopped, and failed ones
    unless `retry_failed` (a failure is usually deterministic: lr 1e6 diverges again)."""
    done = set()
    for tid, run in latest_trial_runs(tracker, experiment_id).items():
        status, tags = run.info.status, run.data.tags
        if status == "FINISHED" or (status == "KILLED" and tags.get(PRUNED) == "true") \
                or (status == "FAILED" and not retry_failed):
            done.add(tid)
    return done


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_stale_runs(tracker: Tracker, experiment_id: str) -> int:
    """Mark KILLED every RUNNING run whose driver is gone: its study run ended, or
    its study's driver process on this host no longer exists. Returns how many."""
    running = tracker.runs(experiment_id, "attributes.status = 'RUNNING'")
    studies = {r.info.run_id: r for r in tracker.runs(experiment_id, f"tags.`{KIND}` = 'study'")}
    host, stale = socket.gethostname(), []
    for run in running:
        tags = run.data.tags
        study = studies.get(run.info.run_id if tags.get(KIND) == "study" else tags.get(STUDY_RUN_ID, ""))
        if study is None:
            stale.append(run)  # an orphan: no study run owns it
            continue
        driver_gone = study.data.tags.get(HOST) == host and not _process_alive(int(study.data.tags.get(PID, "0")))
        if driver_gone or study.info.status != "RUNNING":
            stale.append(run)
    for run in stale:
        tracker.end_run(run.info.run_id, "KILLED")
    return len(stale)


def close_unfinished_children(tracker: Tracker, experiment_id: str, study_run_id: str,
                              pruned: Iterable[str] = (), errors: Mapping[str, str] | None = None) -> int:
    """After Tune returns: tag `ablate.pruned` the trial runs of the trials the scheduler
    stopped early (ids in `pruned`); mark FAILED, with Tune's error as `ablate.error`, the
    runs still RUNNING of trials Tune saw error (`errors`: trial id -> message; a worker
    that died could not record its own failure); mark KILLED every other run of this
    invocation still RUNNING (stopped or interrupted trials). Returns how many were running."""
    pruned, errors, closed = set(pruned), dict(errors or {}), 0
    for run in tracker.runs(experiment_id, f"tags.`{STUDY_RUN_ID}` = '{study_run_id}'"):
        tags = run.data.tags
        if tags.get(KIND) == "trial" and tags.get(TRIAL_ID) in pruned and run.info.status != "FINISHED":
            tracker.set_tags(run.info.run_id, {PRUNED: "true"})
        if run.info.status == "RUNNING":
            error = errors.get(tags.get(TRIAL_ID, ""))
            if error is not None:
                tracker.set_tags(run.info.run_id, {ERROR: redact_text(error)[:_MAX_VALUE]})
            tracker.end_run(run.info.run_id, "FAILED" if error is not None else "KILLED")
            closed += 1
    return closed


# --------------------------------------------------------------------------- a trial (worker side)


class MetricBuffer:
    """Buffers step and eval metrics of one stage run; writes them with log_batch
    every `every` points or `seconds`, and at the end of the stage. A training callback
    (m3ae.train.callbacks.Callback's hooks), not a subclass: importing this module must not
    import torch (`ablate list` reads the store with it).

    Names: on_step -> "<stage>/<name>" (pretrain/mim_loss, synth_vqa/train_loss),
    on_eval -> "<stage>/val_<name>", on_end -> "<stage>/<name>" at the last step (names
    not logged yet: fine-tuning's test numbers).
    """

    def __init__(self, tracker: Tracker, run_id: str, every: int = 500, seconds: float = 15.0):
        self.tracker, self.run_id = tracker, run_id
        self.every, self.seconds = every, seconds
        self.pending: list = []
        self.last_flush = time.monotonic()
        self.down_since: float | None = None  # when a write first failed (the server went away)
        self.last_step = 0
        self.seen: set[str] = set()  # metric names logged so far

    def _add(self, key: str, value: float, step: int) -> None:
        from mlflow.entities import Metric

        self.pending.append(Metric(key, float(value), int(time.time() * 1000), int(step)))
        self.seen.add(key)
        self.last_step = max(self.last_step, int(step))
        if len(self.pending) >= self.every or time.monotonic() - self.last_flush > self.seconds:
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Write the pending points. Mid-stage, a write the server does not answer keeps the
        points and training goes on (the next flush tries again); at the stage's end (`final`)
        it waits with backoff. Either way, once the server has been away longer than the
        tracker's bound, raises TrackingUnavailable: a trial never hangs on a dead server."""
        now = time.monotonic()
        if self.pending:
            away = 0.0 if self.down_since is None else now - self.down_since
            retry = max(0.0, self.tracker.retry_seconds - away) if final else 0.0
            try:
                self.tracker.write_metrics(self.run_id, self.pending, retry_seconds=retry)
                self.pending, self.down_since = [], None
            except TrackingUnavailable:
                self.down_since = self.down_since or now
                if final or time.monotonic() - self.down_since > self.tracker.retry_seconds:
                    raise
        self.last_flush = time.monotonic()

    def on_stage_start(self, stage, total_steps=None):
        pass

    def on_step(self, stage, step, metrics):
        for name, value in metrics.items():
            self._add(f"{stage}/{name}", value, step)

    def on_eval(self, stage, step, metrics):
        for name, value in metrics.items():
            self._add(f"{stage}/{name if name.startswith('val_') else 'val_' + name}", value, step)

    def on_artifact(self, stage, path):
        path = Path(path)
        folder = "reconstructions" if path.suffix.lower() == ".png" else None
        self.tracker.log_file(self.run_id, path, folder)

    def on_end(self, stage, metrics):
        for name, value in metrics.items():
            if f"{stage}/{name}" not in self.seen:  # pretrain's final numbers repeat its last eval
                self._add(f"{stage}/{name}", value, self.last_step)
        self.flush(final=True)


class Pruned(Exception):
    """Raised inside a trial to stop it early on purpose (a search's pruner): the trial
    run and its stage run end KILLED, tagged `ablate.pruned` = "true", not FAILED."""


def plugin_params(trial) -> dict[str, str]:
    """`plugin.<module>`: the version and file hash of each plugin module a trial loaded or
    whose components its config names (what its cache keys hash)."""
    from m3ae import plugins
    from m3ae.config import to_dict

    modules = {name.split(".")[0] for name in trial.plugins}
    used = {**{m: plugins.identity(m) for m in modules}, **plugins.used_by(to_dict(trial.config))}
    return {f"{PLUGIN_PREFIX}{module}": value for module, value in sorted(used.items())}


class TrialRun:
    """The MLflow side of one trial: its run, its stage runs, its final numbers.

        with TrialRun(tracker, experiment_id, study_name, study_run_id, trial) as run:
            with run.stage("pretrain", "pretrain") as (stage_run_id, buffer): ...
            tracker.log_metrics(run.run_id, {"synth_vqa/overall_acc": 0.7})

    An exception inside marks the run FAILED, tags `ablate.error`, logs the
    traceback as `error.txt`, and propagates.
    """

    def __init__(self, tracker: Tracker, experiment_id: str, study_name: str, study_run_id: str, trial,
                 name: str | None = None):
        self.tracker, self.experiment_id = tracker, experiment_id
        self.study_name, self.study_run_id, self.trial = study_name, study_run_id, trial
        self.name = name  # the run's name (ablate_common.naming.run_name); default from the factors' aliases
        self.run_id: str | None = None

    def _tags(self, kind: str) -> dict[str, Any]:
        t = self.trial
        return {KIND: kind, STUDY: self.study_name, STUDY_RUN_ID: self.study_run_id, TRIAL_ID: t.trial_id,
                PRETRAIN_KEY: t.pretrain_key, SEED: t.seed,
                **{FACTOR_PREFIX + path: value for path, value in t.factors.items()}}

    def __enter__(self) -> TrialRun:
        from ablate_common.naming import factor_aliases, run_name
        from m3ae.config import flatten, to_yaml

        name = self.name or run_name(self.trial.factors, self.trial.seed, factor_aliases(list(self.trial.factors)))
        self.run_id = self.tracker.start_run(self.experiment_id, name, self._tags("trial"), parent=self.study_run_id)
        self.tracker.log_params(self.run_id, {**flatten(self.trial.config), **plugin_params(self.trial)})
        self.tracker.log_text(self.run_id, to_yaml(self.trial.config), "config.yaml")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.tracker.end_run(self.run_id, "FINISHED")
            return
        if issubclass(exc_type, Pruned):
            self.tracker.set_tags(self.run_id, {PRUNED: "true", "ablate.pruned_reason": str(exc)})
            self.tracker.end_run(self.run_id, "KILLED")
            return
        record_failure(self.tracker, self.run_id, exc, _status_of(exc))

    @contextmanager
    def stage(self, name: str, kind: str):
        """A stage run (pretrain / finetune) under the trial run; yields (run id, MetricBuffer)."""
        tags = {**self._tags(kind), **({TASK: name} if kind == "finetune" else {})}
        run_id = self.tracker.start_run(self.experiment_id, name, tags, parent=self.run_id)
        buffer = MetricBuffer(self.tracker, run_id)
        try:
            yield run_id, buffer
        except Pruned:
            buffer.flush(final=True)
            self.tracker.set_tags(run_id, {PRUNED: "true"})
            self.tracker.end_run(run_id, "KILLED")
            raise
        except BaseException as error:
            if not isinstance(error, TrackingUnavailable):
                buffer.flush(final=True)
            record_failure(self.tracker, run_id, error, _status_of(error))
            raise
        buffer.flush(final=True)
        self.tracker.end_run(run_id, "FINISHED")

    def link_pretrain(self, pretrain_run_id: str, cached: bool) -> None:
        self.tracker.set_tags(self.run_id, {PRETRAIN_RUN_ID: pretrain_run_id, "ablate.pretrain_cached": cached})


def _status_of(error: BaseException) -> str:
    """KILLED when the run was stopped from outside (Ctrl-C; Tune stopping the trial
    raises SystemExit in it), FAILED when it broke."""
    return "KILLED" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "FAILED"


def record_failure(tracker: Tracker, run_id: str, error: BaseException, status: str = "FAILED") -> None:
    """End a run that raised: FAILED with the error message as a tag and the traceback
    as error.txt; KILLED (stopped from outside) with neither. When the error is the tracking
    server itself being gone, nothing is written: the driver records it once Tune reports
    the trial errored (`close_unfinished_children`)."""
    if isinstance(error, TrackingUnavailable):
        return
    try:
        if status == "FAILED":
            text = redact_text("".join(traceback.format_exception(type(error), error, error.__traceback__)))
            tracker.set_tags(run_id, {ERROR: redact_text(f"{type(error).__name__}: {error}")[:_MAX_VALUE]})
            tracker.log_text(run_id, text, "error.txt")
    finally:
        tracker.end_run(run_id, status)
