"""`ablate server`: an MLflow tracking server for a cluster's workers.

Runs `mlflow server` on a database (default sqlite in <workdir>/server/; give a
PostgreSQL URL for many writers) with proxied artifacts: workers upload their
artifacts through the server, which writes them under `--artifacts-destination`,
so no worker writes to its own disk. It binds 127.0.0.1 unless `--host` says
otherwise; binding 0.0.0.0 lets anyone who reaches the port read and write every
run (MLflow has no login here), so expose it on a trusted network only.
Point a study at it with `ablate run STUDY --tracking-uri http://HOST:PORT`.
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--backend-store-uri", default=None, metavar="URI",
                        help="the runs' database: sqlite:///ABS/PATH.db or postgresql://user:pw@host/db "
                             "(default: sqlite:///<workdir>/server/mlflow.db)")
    parser.add_argument("--artifacts-destination", default=None, metavar="DIR_OR_URI",
                        help="where the server stores the artifacts workers upload "
                             "(default: <workdir>/server/artifacts; or s3://..., gs://...)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    parser.add_argument("--allowed-hosts", default=None, metavar="HOSTS",
                        help="Host headers to accept, comma-separated (MLflow's default: localhost and private IPs)")


def server_command(args) -> tuple[list[str], str, str]:
    """(the mlflow server command, the backend store URI, the artifacts destination)."""
    from ablations.cli import UsageError
    from ablations.commands.ui import check_listen
    from ablations.databases import check_driver

    check_listen(args.host, args.port)
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    home = args.workdir / "server"
    store = args.backend_store_uri or f"sqlite:///{home / 'mlflow.db'}"
    check_driver(store, "--backend-store-uri")
    if store.startswith("sqlite:///"):
        db = Path(store.removeprefix("sqlite:///"))
        if not db.is_absolute():  # the server's cwd is not the workers' cwd
            raise UsageError(f"--backend-store-uri: the sqlite path must be absolute "
                             f"(sqlite:////abs/path.db), got {store}")
        db.parent.mkdir(parents=True, exist_ok=True)
    artifacts = args.artifacts_destination or str(home / "artifacts")
    if "://" not in artifacts:
        artifacts = str(Path(artifacts).expanduser().absolute())
        Path(artifacts).mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
               "--serve-artifacts", "--artifacts-destination", artifacts,
               "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    if args.allowed_hosts:
        command += ["--allowed-hosts", args.allowed_hosts]
    return command, store, artifacts


def run(args) -> int:
    from ablate_common.redact import redact_uri
    from ablations.commands.ui import serve

    command, store, artifacts = server_command(args)
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    banner = (f"MLflow server on http://{args.host}:{args.port}  (runs: {redact_uri(store)}; artifacts: {artifacts})\n"
              f"  ablate run STUDY.yaml --tracking-uri http://{host}:{args.port}"
              + ("   # from another machine: this machine's address" if host != args.host else "")
              + "\n(Ctrl-C to stop)")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        banner += f"\nwarning: bound to {args.host}: anyone who reaches this port can read and change every run"
    return serve(command, banner)
