"""`ablate ui`: the MLflow UI on this work directory's store, on 127.0.0.1 by default."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")


def run(args) -> int:
    from ablations.cli import UsageError
    from ablations.tracking import default_tracking_uri

    db = args.workdir / "mlflow.db"
    if not db.exists():
        raise UsageError(f"no MLflow store at {db}: run a study first (ablate run STUDY.yaml --workdir {args.workdir})")
    command = [str(Path(sys.executable).with_name("mlflow")), "ui",
               "--backend-store-uri", default_tracking_uri(args.workdir),
               "--default-artifact-root", (args.workdir / "artifacts").as_uri(),
               "--host", args.host, "--port", str(args.port)]
    server = subprocess.Popen(command)
    # Stop the server with us, whether by Ctrl-C or by a `kill` of this process.
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    print(f"MLflow UI for {args.workdir}: http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait(timeout=10)
        return 0
