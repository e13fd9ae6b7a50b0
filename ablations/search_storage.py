"""The Optuna side of a search: its RDB storage, its study (created, or resumed when the same
search made it), and how much of the trial budget the study has used.
"""

from __future__ import annotations

from pathlib import Path

from ablate_common.redact import redact_uri
from ablations.search import SearchSpec, build_pruner, build_sampler
from ablations.spec import SpecError

FINGERPRINT = "ablate.fingerprint"  # Optuna study user attribute
HEARTBEAT_SECONDS = 30  # a trial whose driver has been silent for 2x this is failed and retried
MAX_RETRY = 1


def default_storage(workdir: Path) -> str:
    """sqlite in the work directory, absolute so every process opens the same file."""
    return f"sqlite:///{Path(workdir).absolute() / 'optuna.db'}"


def open_storage(url: str, heartbeat_seconds: int | None = HEARTBEAT_SECONDS):
    """An Optuna RDB storage; with a heartbeat, stale trials are failed and retried once."""
    import optuna

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if heartbeat_seconds is None:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    return optuna.storages.RDBStorage(
        url, engine_kwargs=engine, heartbeat_interval=heartbeat_seconds,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))


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
            f"{redact_uri(storage_url)} already holds an Optuna study named {spec.name!r} from a different search "
            f"(fingerprint {stored}, this search {spec.fingerprint()}: the space, objectives, profile, base, tasks "
            f"or seeds changed). Give the search a new name, or delete the old study: "
            f"optuna delete-study --study-name {spec.name} --storage {redact_uri(storage_url)}")
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
