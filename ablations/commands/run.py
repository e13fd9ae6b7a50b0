"""`ablate run STUDY.yaml`: run a grid study on Ray Tune, tracked in MLflow; it ends with the
verdicts (each setting against the leader, paired by seed), also logged as decisions.json.

Re-running the same command skips trials that finished (by trial id) and
resumes the rest; `--dry-run` prints the trial table and creates nothing.
One `ablate run` per study and work directory at a time: a second one exits 2 at once
(study lock <workdir>/locks/<study>.lock, naming the process that holds it).
"""

from __future__ import annotations

import os
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("study", type=Path, help="the study YAML file")
    parser.add_argument("--profile", default=None, help="override the study's profile (smoke | laptop | paper)")
    parser.add_argument("--max-concurrent", type=int, default=None, metavar="N",
                        help="run at most N trials at once (default: as many as the resources allow)")
    parser.add_argument("--address", default=None,
                        help="an existing Ray cluster (default: $RAY_ADDRESS, else a local Ray on this machine)")
    parser.add_argument("--storage", default=None, metavar="PATH_OR_URI",
                        help="Ray Tune's storage, shared by every node of a cluster (a shared folder, or s3:// ...); "
                             "a folder also holds the pre-train cache (default: <workdir>/ray)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite in the work directory)")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="folder with the real datasets (replaces the study's data.root)")
    parser.add_argument("--dry-run", action="store_true", help="print the trials and exit")
    parser.add_argument("--retry-failed", action="store_true", help="also re-run trials that failed before")
    parser.add_argument("--budget", type=float, default=None, metavar="MINUTES",
                        help="adaptive seeds: start no round that would end after MINUTES of this run (estimated "
                             "from the trials so far; the first round always runs, so --budget 0 is a pilot)")


def run(args) -> int:
    from ablations.cli import UsageError
    from ablations.spec import load_spec
    from ablations.study import expand, trial_table

    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UsageError("--max-concurrent must be at least 1")
    data_root = str(Path(args.data_root).expanduser().absolute()) if args.data_root else None  # trials may run elsewhere
    spec = load_spec(args.study, args.profile, data_root)
    if args.budget is not None and (args.budget < 0 or args.budget != args.budget):
        raise UsageError(f"--budget must be a number of minutes >= 0, got {args.budget}")
    if args.budget is not None and spec.adaptive is None:
        raise UsageError(f"--budget needs adaptive seeds: {args.study} has fixed seeds {spec.seeds}; write "
                         "seeds: {start: 2, max: 8, min_effect: 1.0} to let seeds go where the ranking is open")
    trials = expand(spec)
    if args.dry_run:
        print(trial_table(spec, trials))
        return 0

    from ablations import tracking
    from ablations.runner import run_study

    uri = tracking.resolve_tracking_uri(args.workdir, args.tracking_uri)
    storage = args.storage
    if storage and "://" not in storage:
        storage = str(Path(storage).expanduser().absolute())  # Tune and the trials need an absolute path
    if (args.address or os.environ.get("RAY_ADDRESS")) and uri.startswith("sqlite"):
        print("note: on a multi-machine cluster, workers cannot share a sqlite MLflow store: start "
              "`ablate server` and pass --tracking-uri http://HOST:PORT (see README, Running on a cluster)")
    outcome = run_study(spec, trials, args.study.read_text(), workdir=args.workdir, tracking_uri=uri,
                        max_concurrent=args.max_concurrent, address=args.address, retry_failed=args.retry_failed,
                        storage=storage, budget_minutes=args.budget)
    if outcome.interrupted:
        print("interrupted: run the same command again to resume (finished trials are kept)")
        return 130
    if outcome.failed:
        print(f"{len(outcome.failed)} trial(s) failed; fix and re-run with --retry-failed")
        return 1
    return 0
