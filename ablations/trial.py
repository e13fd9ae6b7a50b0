"""One trial, as a Ray Tune function trainable: pre-train (through the cache) -> fine-tune each task.

Everything it needs arrives in its Tune config: `trial` (a `Trial` payload) and
`study` (a `StudyContext`: names, ids, the tracking URI and the work directory, all absolute).
It reports the study's headline metric to Tune after every fine-tune
evaluation, so ASHA can stop a weak trial early, and once more at the end with
the test number. A failure is recorded in MLflow and re-raised, so Tune marks
the trial errored and the rest of the study goes on. With `resources.workers` > 1
in the study context, its stages run data-parallel on Ray Train workers
(`ablations.distributed`); everything else, MLflow included, stays in the trial.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ablate_common.naming import factor_aliases, run_name
from ablations import faults
from ablations.cache import PretrainCache
from ablations.distributed import stage_runner
from ablations.paths import within
from ablations.progress import FILE as PROGRESS
from ablations.progress import TrialProgress
from ablations.study import Trial
from ablations.tracking import Tracker, TrialRun
from m3ae.train.callbacks import Callback

WORKERS = "ablate.workers"  # trial run tag: data-parallel processes per trial (set when more than one)


def work_paths(workdir: Path, study_name: str, trial_id: str, cache_root: str | Path | None = None) -> dict[str, Path]:
    """`cache_root`: the caches' folder when it is shared by a cluster's nodes (`--storage DIR` ->
    DIR/cache); default <workdir>/cache."""
    workdir = Path(workdir).absolute()
    cache = Path(cache_root).absolute() if cache_root else workdir / "cache"
    return {"data": cache / "data", "pretrain": cache / "pretrain",
            "trial": within(workdir, "trials", study_name, trial_id)}  # names never lead outside


def node_tags() -> dict[str, str]:
    """Where a trial runs: the Ray node id and IP when inside Ray, and the host name."""
    import socket
    import sys

    tags = {"ablate.hostname": socket.gethostname()}
    ray = sys.modules.get("ray")  # only when this process already uses Ray: never start a session here
    if ray is not None and ray.is_initialized():
        context = ray.get_runtime_context()
        tags.update({"ablate.node": context.get_node_id(), "ablate.node_ip": ray.util.get_node_ip_address()})
    return tags


class TuneReporter(Callback):
    """Sends the headline metric's validation value to Tune after each evaluation of its task."""

    def __init__(self, metric: str):
        self.task, _, self.name = metric.partition("/")
        self.metric = metric

    def on_eval(self, stage: str, step: int, metrics: Mapping[str, float]) -> None:
        value = metrics.get(self.name, metrics.get(f"val_{self.name}"))
        if stage == self.task and value is not None:
            from ray import tune

            tune.report({self.metric: float(value), "phase": "val", "stage": stage, "step": int(step)})


@dataclass(frozen=True)
class StudyContext:
    """What every trial of a study (or a search) needs from its driver. It travels through Ray's
    object store, never Tune's param space (which Tune writes to disk; a tracking URI may carry a
    password)."""

    study_name: str
    study_run_id: str  # the parent of every trial run
    experiment_id: str
    tracking_uri: str  # absolute: trials run in other processes and on other nodes
    workdir: Path  # absolute
    metric: str  # the headline metric, reported to Tune (or watched by a search)
    resources: dict = field(default_factory=dict)  # the study's resources; `workers` > 1: data-parallel stages
    cache_root: str | None = None  # the caches' folder when a cluster shares it; default <workdir>/cache
    aliases: dict[str, str] | None = None  # the factors' short names for run names; default from the factors
    storage: str | None = None  # Ray's storage (Ray Train's run state goes under it); default <workdir>/ray
    fault: str | None = None  # test-only fault injection (`ablations.faults`); None in real runs

    def paths(self, trial_id: str) -> dict[str, Path]:
        return work_paths(self.workdir, self.study_name, trial_id, self.cache_root)


@dataclass(frozen=True)
class TrialResult:
    run_id: str  # the MLflow trial run
    metrics: dict[str, float]  # the final numbers logged on it: <task>/<metric> and cost/*


def run_trial(params: dict, study: StudyContext) -> None:
    """The Tune trainable: `params["trial"]` is one trial's payload."""
    trial = Trial.from_payload(params["trial"])
    folder = study.paths(trial.trial_id)["trial"]
    result = execute(trial, study, callbacks=[TuneReporter(study.metric)], progress=TrialProgress(folder / PROGRESS))

    from ray import tune

    tune.report({study.metric: result.metrics.get(study.metric, float("nan")), "phase": "test"})


def execute(trial: Trial, study: StudyContext, callbacks=(), tags: Mapping | None = None, name_prefix: str = "",
            progress: Callback | None = None) -> TrialResult:
    """Pre-train (through the cache) and fine-tune one trial inside its MLflow trial run.
    `callbacks` see every fine-tune stage (Tune's reporter, an Optuna pruning reporter);
    `tags` go on the trial run (a search's `ablate.optuna_trial`); `name_prefix` goes before the
    run name (a search's trial number). `progress` sees every stage, pre-training included
    (ablations.progress.TrialProgress)."""
    import torch

    cfg = trial.config
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    paths = study.paths(trial.trial_id)
    tracker = Tracker(study.tracking_uri)
    injected = faults.injectors(study.fault, trial.trial_id)
    watchers = [progress] if progress is not None else []
    callbacks = [*callbacks, *injected, *watchers]

    resources = study.resources
    storage = f"{study.storage or study.workdir / 'ray'}/train"  # Ray Train's run state, if any
    aliases = study.aliases or factor_aliases(list(trial.factors))
    name = name_prefix + run_name(trial.factors, trial.seed, aliases)
    with TrialRun(tracker, study.experiment_id, study.study_name, study.study_run_id, trial, name) as run, \
            stage_runner(resources, storage=storage, name=f"{study.study_name}-{trial.trial_id}") as stages:
        workers = int(resources.get("workers", 1))
        tracker.set_tags(run.run_id, {**node_tags(), **(tags or {}), **({WORKERS: workers} if workers > 1 else {})})
        checkpoint, pretrain_cost = None, {"seconds": 0.0, "flops": 0.0}
        if cfg.pretrain.enabled:
            entry = pretrained(run, tracker, trial, paths, [*injected, *watchers], stages)
            checkpoint, pretrain_cost = entry.checkpoint, {"seconds": entry.seconds, "flops": entry.flops}

        finals: dict[str, float] = {}
        finetune_seconds, finetune_flops, eval_seconds = 0.0, 0.0, 0.0
        for task in cfg.finetune.tasks:
            with run.stage(task, "finetune") as (_, buffer):
                result = stages.finetune(cfg, task, checkpoint, paths["trial"] / task, paths["data"],
                                         callbacks=[buffer, *callbacks])
            finals.update({f"{task}/{k}": float(v) for k, v in result.metrics.items()})
            finetune_seconds += result.seconds
            finetune_flops += result.flops
            eval_seconds += result.eval_seconds
        finals.update({"cost/pretrain_seconds": pretrain_cost["seconds"], "cost/finetune_seconds": finetune_seconds,
                       "cost/eval_seconds": eval_seconds,  # of finetune_seconds
                       "cost/flops": pretrain_cost["flops"] + finetune_flops})
        tracker.log_metrics(run.run_id, finals)
    return TrialResult(run.run_id, finals)


def pretrained(run: TrialRun, tracker: Tracker, trial: Trial, paths: dict[str, Path], extra=(), stages=None):
    """The pre-train cache entry for this trial's key, built under the key's lock if missing.
    `extra`: more pre-training callbacks (test-only fault injectors); `stages`: what runs the
    pre-training (`ablations.distributed.stage_runner`; default m3ae.train in this process)."""
    from m3ae.train import pretrain

    run_pretrain = stages.pretrain if stages is not None else pretrain
    cache = PretrainCache(paths["pretrain"])
    with cache.lock(trial.pretrain_key):
        entry = cache.get(trial.pretrain_key)
        cached = entry is not None
        if entry is None:
            staging = cache.staging(trial.pretrain_key)
            try:
                with run.stage("pretrain", "pretrain") as (stage_run_id, buffer):
                    result = run_pretrain(trial.config, staging, paths["data"], callbacks=[buffer, *extra])
                    entry = cache.put(trial.pretrain_key, staging, result.checkpoint, stage_run_id,
                                      result.metrics, result.seconds, result.flops)
                    tracker.log_metrics(stage_run_id, {"cost/pretrain_seconds": result.seconds,
                                                       "cost/flops": result.flops})
            except Exception:
                shutil.rmtree(staging, ignore_errors=True)  # a broken build must not be resumed
                raise  # (a stopped or killed one is: its checkpoint stays in staging)
    run.link_pretrain(entry.run_id, cached)
    return entry
