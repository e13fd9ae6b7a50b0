"""`ablate search SEARCH.yaml`: an Optuna search over the M3AE design space, trials on Ray, runs in MLflow.

The Optuna study lives in an RDB storage (default: sqlite:///<workdir>/optuna.db)
under the search's `name`. Running the same command again continues that study
up to `n_trials` trials in total (`--n-trials 24` raises the total); a study of
the same name made by a different search (another space, objectives, profile,
base, tasks or seeds) is refused rather than merged. Watch it live with
`optuna-dashboard <storage>`.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("search", type=Path, help="the search YAML file (kind: search)")
    parser.add_argument("--profile", default=None, help="override the search's profile (smoke | laptop | paper)")
    parser.add_argument("--n-trials", type=int, default=None, metavar="N",
                        help="trials in the study when this command ends, counting earlier runs (default: the file's)")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage, any SQLAlchemy URL, e.g. postgresql://host/db "
                             "(default: sqlite:///<workdir>/optuna.db)")
    parser.add_argument("--max-concurrent", type=int, default=None, metavar="N",
                        help="run at most N trials at once (default: as many as the resources allow)")
    parser.add_argument("--address", default=None,
                        help="an existing Ray cluster (default: $RAY_ADDRESS, else a local Ray on this machine)")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="folder with the real datasets (replaces the search's data.root)")
    parser.add_argument("--shared-dir", default=None, metavar="DIR",
                        help="a folder every node of a Ray cluster reaches: holds the pre-train and data caches "
                             "(DIR/cache; default <workdir>/cache)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite in the work directory)")


def run(args) -> int:
    from ablations.cli import UsageError
    from ablations.search import data_configs, parse_search
    from ablations.spec import check_data, read_file

    for flag in ("n_trials", "max_concurrent"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    data_root = None if args.data_root is None else Path(args.data_root).expanduser().absolute()
    text = read_file(args.search, "search")
    spec = parse_search(text, str(args.search), args.profile, data_root)  # before anything is created
    check_data(data_configs(spec), str(args.search))  # real datasets under data.root

    from ablate_common.redact import redact_uri
    from ablations import tracking
    from ablations.databases import check_driver
    from ablations.search_runner import run_search
    from ablations.search_storage import default_storage

    uri = tracking.resolve_tracking_uri(args.workdir, args.tracking_uri)
    tracking.check_reachable(uri)  # a wrong URI is found in seconds, before anything is written
    storage = args.storage or default_storage(args.workdir)
    check_driver(storage, "--storage")  # a missing PostgreSQL driver is named before anything starts
    print(f"Optuna storage: {redact_uri(storage)}  (watch it: optuna-dashboard {redact_uri(storage)})", flush=True)
    outcome = run_search(spec, text, workdir=args.workdir, storage_url=storage,
                         tracking_uri=uri,
                         n_trials=args.n_trials, max_concurrent=args.max_concurrent, address=args.address,
                         cache_root=str(Path(args.shared_dir).expanduser().absolute() / "cache")
                         if args.shared_dir else None)
    return 0 if outcome.states.get("COMPLETE", 0) else 1
