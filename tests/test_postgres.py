"""`ablate search --storage postgresql+psycopg2://...`: Optuna on a real PostgreSQL.

The server is a throw-away cluster in a temporary folder (Debian's `postgresql`
package, installed by .ci/system-deps.sh), listening on 127.0.0.1 at a free port,
started with `initdb` + `pg_ctl` as a non-root user (root cannot run postgres) and
stopped at the end. Skipped, with the reason, only where PostgreSQL is not installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from ablations.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage")]

SEARCH = """
name: pg_lr
kind: search
profile: smoke
space:
  finetune.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
objectives: [{metric: synth_vqa/overall_acc, direction: maximize}]
sampler: {name: tpe, seed: 0, n_startup_trials: 2}
n_trials: 3
tasks: [synth_vqa]
"""
PASSWORD = "s3cret-pw"  # trust auth ignores it; it must never be printed


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(user: str | None, command: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *command] if user else command


@pytest.fixture(scope="module")
def postgres_url():
    """A SQLAlchemy URL of an empty database on a fresh PostgreSQL on 127.0.0.1."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (`bash .ci/system-deps.sh` as root installs it)")
    pytest.importorskip("psycopg2", reason="psycopg2-binary is not installed (pip install -e '.[test]')")
    user = None
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the package's `postgres` user
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        user = "postgres"
    home = Path(tempfile.mkdtemp(prefix="ablate-pg-"))  # not tmp_path: its parents are root-only
    if user:
        shutil.chown(home, user)
    data, sockets, port = home / "data", home / "sock", _free_port()
    run = lambda *cmd: subprocess.run(_as_user(user, [str(c) for c in cmd]), check=True,  # noqa: E731
                                      capture_output=True, text=True, timeout=120)
    started = False
    try:
        run(bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        run("mkdir", "-p", sockets)
        run(bin_dir / "pg_ctl", "-D", data, "-l", home / "server.log", "-w", "-t", "60",
            "-o", f"-k {sockets} -p {port} -h 127.0.0.1 -c fsync=off", "start")
        started = True
        run(bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "ablate")
        yield f"postgresql+psycopg2://postgres:{PASSWORD}@127.0.0.1:{port}/ablate"
    except subprocess.CalledProcessError as error:
        pytest.fail(f"PostgreSQL did not start: {error.cmd}\n{error.stdout}\n{error.stderr}")
    finally:
        if started:
            run(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


def test_a_search_keeps_its_optuna_study_in_postgresql(tmp_path, postgres_url, ray_session, capsys):
    path = tmp_path / "pg_lr.yaml"
    path.write_text(SEARCH)
    workdir, shared = tmp_path / "runs", tmp_path / "shared"
    assert main(["search", str(path), "--workdir", str(workdir), "--storage", postgres_url,
                 "--max-concurrent", "2", "--shared-dir", str(shared)]) == 0
    out = capsys.readouterr().out
    assert "postgresql+psycopg2://postgres:***@127.0.0.1" in out and PASSWORD not in out

    study = optuna.load_study(study_name="pg_lr", storage=postgres_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert all(1e-4 <= t.params["finetune.lr"] <= 3e-3 for t in study.trials)
    assert study.best_value is not None
    assert not (workdir / "optuna.db").exists()  # nothing went to the default sqlite storage
    # --shared-dir holds the caches a cluster's nodes share (one pre-training: fine-tune settings only)
    assert len([p for p in (shared / "cache" / "pretrain").iterdir() if p.is_dir()]) == 1
    assert not (workdir / "cache").exists()

    # the same command continues the study in PostgreSQL up to a higher total
    assert main(["search", str(path), "--workdir", str(workdir), "--storage", postgres_url,
                 "--n-trials", "4"]) == 0
    assert "3 of 4 trials already in the study, 1 to go" in capsys.readouterr().out
    assert len(optuna.load_study(study_name="pg_lr", storage=postgres_url).trials) == 4
