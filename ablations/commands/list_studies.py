"""`ablate list`: the studies in the store and their trials' states."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite in the work directory)")


def run(args) -> int:
    from collections import Counter

    from ablate_common.tables import render_table
    from ablations import tracking

    uri = tracking.resolve_tracking_uri(args.workdir, args.tracking_uri)
    tracking.check_reachable(uri)
    if uri.startswith("sqlite:") and not (args.workdir / "mlflow.db").exists():
        print(f"no studies yet in {args.workdir} (run `ablate run STUDY.yaml`)")
        return 0
    tracker = tracking.Tracker(uri)
    rows = []
    for experiment in tracker.client.search_experiments():
        studies = tracker.runs(experiment.experiment_id, f"tags.`{tracking.KIND}` = 'study'")
        if not studies:
            continue
        trials = tracking.latest_trial_runs(tracker, experiment.experiment_id)
        states = Counter("PRUNED" if r.data.tags.get(tracking.PRUNED) == "true" else r.info.status
                         for r in trials.values())
        latest = max(studies, key=lambda r: r.info.start_time)
        total = int(latest.data.params.get("trials", len(trials)))  # the study's size as last run
        rows.append([experiment.name, latest.data.params.get("profile", "?"), str(total), *[str(states.get(s, 0)) for s in
                     ("FINISHED", "FAILED", "RUNNING", "KILLED", "PRUNED")], str(max(0, total - len(trials))),
                     str(len(studies)), _time(latest.info.start_time)])
    if not rows:
        print(f"no studies yet in {tracking.redact_uri(uri)}")
        return 0
    print(render_table(["study", "profile", "trials", "finished", "failed", "running", "killed", "pruned", "not run",
                        "invocations", "last run"], rows))
    return 0


def _time(ms: int) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))
