"""One Optuna trial of a search, on a Ray worker: every seed through the study runner's trial
(`ablations.trial.execute`), with the watched metric reported to Optuna so its pruner can stop it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Literal, Mapping

from ablations import tracking
from ablations.search import SearchSpec, build_pruner
from ablations.search_storage import open_storage
from ablations.study import Trial
from ablations.trial import StudyContext
from m3ae.train.callbacks import Callback

OPTUNA_TRIAL = "ablate.optuna_trial"  # MLflow tag: the Optuna trial number of a trial run
OPTUNA_STUDY = "ablate.optuna_study"


@dataclass(frozen=True)
class SearchTrialRequest:
    """What the driver sends a worker: everything to run one Optuna trial's seeds."""

    spec: dict  # the SearchSpec, dumped
    storage_url: str  # the Optuna storage, for reports and prune decisions
    number: int  # the Optuna trial number
    optuna_trial_id: int  # its id in the storage
    study: StudyContext
    trials: list[dict]  # one `Trial` payload per seed


@dataclass(frozen=True)
class SearchTrialResult:
    """How one Optuna trial ended."""

    state: Literal["complete", "pruned", "failed"]
    metrics: dict[str, float] = field(default_factory=dict)  # complete: the final numbers, mean over seeds
    run_ids: list[str] = field(default_factory=list)  # the MLflow trial runs, one per seed that finished
    error: str = ""  # pruned or failed: why

    @classmethod
    def failed(cls, error: str, run_ids: list[str] | None = None) -> SearchTrialResult:
        return cls("failed", run_ids=run_ids or [], error=error)


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


def _optuna_trial(request: SearchTrialRequest, spec: SearchSpec):
    """The Optuna trial object inside a worker: reports and prune decisions go to the shared storage."""
    import optuna

    storage = open_storage(request.storage_url, heartbeat_seconds=None)
    # a random sampler: the worker never samples; it must not spend time fitting TPE
    study = optuna.load_study(study_name=spec.name, storage=storage, pruner=build_pruner(spec),
                              sampler=optuna.samplers.RandomSampler())
    return optuna.Trial(study, request.optuna_trial_id)


def execute_search_trial(request: SearchTrialRequest) -> SearchTrialResult:
    """Run every seed of one Optuna trial (a Ray task); its objectives are means over seeds."""
    from ablations.trial import execute

    spec = SearchSpec.model_validate(request.spec)
    reporter = None
    if spec.watched_metric is not None:
        reporter = OptunaReporter(_optuna_trial(request, spec), spec.watched_metric)
    tags = {OPTUNA_TRIAL: request.number, OPTUNA_STUDY: spec.name}
    finals, run_ids = [], []
    for payload in request.trials:
        trial = Trial.from_payload(payload)
        callbacks = [reporter] if reporter else []
        try:
            result = execute(trial, request.study, callbacks=callbacks, tags=tags, name_prefix=f"t{request.number}-")
        except tracking.Pruned as stop:
            return SearchTrialResult("pruned", run_ids=run_ids, error=str(stop))
        except Exception as error:  # noqa: BLE001 - recorded in MLflow by the trial run; told FAIL
            return SearchTrialResult.failed(f"{type(error).__name__}: {error}", run_ids)
        finals.append(result.metrics)
        run_ids.append(result.run_id)
    keys = set.intersection(*(set(f) for f in finals))
    return SearchTrialResult("complete", {k: statistics.fmean(f[k] for f in finals) for k in sorted(keys)}, run_ids)
