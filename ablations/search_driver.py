"""The search driver: asks Optuna for trials while the budget and the free slots allow, runs each
as a Ray task (`ablations.search_trial`), and tells Optuna how it ended.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

from ablations.distributed import trial_request
from ablations.heartbeat import Heartbeat
from ablations.search import SearchSpec, distributions
from ablations.search_storage import budget_used
from ablations.search_summary import objective_text, params_text
from ablations.search_trial import SearchTrialRequest, SearchTrialResult, execute_search_trial
from ablations.spec import plugin_modules
from ablations.study import Trial, trial_pretrain_key
from ablations.study_run import say
from ablations.trial import StudyContext
from m3ae.config import ConfigError
from m3ae.keys import trial_id

POLL_SECONDS = 2.0


@dataclass
class Pending:
    trial: Any  # optuna.Trial
    key: str  # the trial ids of its seeds: equal keys are the same experiment
    started: float
    ref: Any = None  # the Ray object ref (None: waits for an identical trial to finish)


class Driver:
    """Asks Optuna for trials while the budget and the free slots allow, runs each
    as a Ray task, tells Optuna how it ended. One instance per invocation."""

    def __init__(self, spec: SearchSpec, study, storage_url: str, context: StudyContext, n_trials: int,
                 max_concurrent: int, timeout: float | None, heartbeat: Heartbeat):
        import ray

        self.spec, self.study, self.storage_url, self.context = spec, study, storage_url, context
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
            self._tell(pending, SearchTrialResult.failed(f"invalid config: {error}"))
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
        request = SearchTrialRequest(self.spec.model_dump(), self.storage_url, trial.number, trial._trial_id,
                                     self.context, [t.to_payload() for t in trials])
        pending.ref = self.remote.remote(request)
        self.ran += 1
        say(f"[{time.strftime('%H:%M:%S')}] trial {trial.number} started: {params_text(params)}")

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
                result = SearchTrialResult.failed(f"{type(error).__name__}: {error}")
            self._tell(pending, result)
            for twin in [p for p in self.pending.values() if p.key == pending.key and p.ref is None]:
                self._tell_copy(twin, self.study.get_trials(deepcopy=False)[pending.trial.number])

    def _tell(self, pending: Pending, result: SearchTrialResult) -> None:
        from optuna.trial import TrialState

        trial, spent = pending.trial, time.monotonic() - pending.started
        trial.set_user_attr("mlflow_run_ids", result.run_ids)
        if result.run_ids:
            trial.set_user_attr("mlflow_run_id", result.run_ids[0])
        state, error = result.state, result.error
        if state == "complete":
            values = [result.metrics.get(m, float("nan")) for m in self.spec.metric_names]
            if all(math.isfinite(v) for v in values):
                trial.set_user_attr("metrics", result.metrics)
                self.study.tell(trial, values)
                say(f"[{time.strftime('%H:%M:%S')}] trial {trial.number} complete in {spent:.0f}s: "
                    + ", ".join(f"{m} {objective_text(m, v)}" for m, v in zip(self.spec.metric_names, values)))
                self._forget(pending)
                return
            state, error = "failed", f"an objective is missing or not finite: {values}"
        if state == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
            say(f"[{time.strftime('%H:%M:%S')}] trial {trial.number} pruned after {spent:.0f}s ({error})")
        else:
            trial.set_user_attr("error", error[:1000])
            self.study.tell(trial, state=TrialState.FAIL)
            say(f"[{time.strftime('%H:%M:%S')}] trial {trial.number} FAILED: {error}")
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
