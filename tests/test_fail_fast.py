"""What cannot work fails fast and clearly. Each case runs `ablate` as a user would (a real
process, with a time limit) on something that cannot work: a file it must not read (a FIFO,
/dev/zero, a huge, binary or deeply nested file), a service nobody answers at (a Ray address,
a tracking server), a value out of range, a resource no node has, a server that cannot listen,
a work directory that is a file. Every case must: end within its time limit, exit with its
code (2: bad input), print no traceback, name the offending path or value, and leave the work
directory as it was. Add a row when a verb or a field is added.

Value errors inside study and search files are the corpus of tests/data/bad_studies and
tests/data/bad_searches (test_bad_input.py); this file holds what only shows at run time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ablations.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMOKE_STUDY = "name: ff_study\nprofile: smoke\ntasks: [synth_vqa]\n"
SMOKE_SEARCH = ("name: ff_search\nkind: search\nprofile: smoke\ntasks: [synth_vqa]\nn_trials: 2\n"
                "objectives: [{metric: synth_vqa/overall_acc}]\n"
                "space:\n  finetune.lr: {type: float, low: 1.0e-4, high: 1.0e-3}\n")
NOBODY = "127.0.0.1:1"  # nothing listens on port 1


@dataclass(frozen=True)
class Case:
    """`ablate ARGV` must exit `code` within `seconds`, its stderr holding every `expect` fragment.
    In ARGV and `expect`, {dir} is the test's folder and {wd} the work directory. `process`: run
    in a process of its own, killed at the time limit (what used to hang); the others call
    `main(argv)` in this process (the same code, without paying for imports each time)."""

    id: str
    argv: list[str]
    expect: list[str]
    code: int = 2
    seconds: float = 30.0
    env: dict[str, str] = field(default_factory=dict)
    process: bool = False


CASES = [
    # ---- files that must not be read (before: a FIFO hung, /dev/zero grew until killed)
    Case("fifo-validate", ["validate", "{dir}/fifo.yaml"], ["{dir}/fifo.yaml", "not a regular file"],
         process=True),
    Case("fifo-run", ["run", "{dir}/fifo.yaml"], ["{dir}/fifo.yaml", "not a regular file"],
         process=True),
    Case("fifo-report", ["report", "{dir}/fifo.yaml"], ["{dir}/fifo.yaml", "not a regular file"],
         process=True),
    Case("fifo-findings", ["findings", "{dir}/fifo.yaml", "--tracking-uri", "sqlite:///{dir}/store.db"],
         ["{dir}/fifo.yaml", "not a regular file"], process=True),
    Case("dev-zero-validate", ["validate", "/dev/zero"], ["/dev/zero", "not a regular file"],
         process=True),
    Case("dev-zero-search", ["search", "/dev/zero"], ["/dev/zero", "not a regular file"],
         process=True),
    Case("huge-file", ["validate", "{dir}/huge.yaml"], ["{dir}/huge.yaml: 1,800,008 bytes, more than the 1,000,000"]),
    Case("directory", ["validate", "{dir}"], ["{dir}: is a directory"]),
    Case("latin1", ["validate", "{dir}/latin1.yaml"], ["{dir}/latin1.yaml:2: not UTF-8 text (byte 0xc9"]),
    Case("binary", ["run", "{dir}/binary.yaml"], ["{dir}/binary.yaml:", "not UTF-8 text (byte 0x80"]),
    Case("deep-nesting", ["validate", "{dir}/deep.yaml"], ["{dir}/deep.yaml", "nested too deeply"]),
    Case("deep-nesting-report", ["report", "{dir}/deep.yaml"], ["{dir}/deep.yaml", "nested too deeply"]),
    Case("python-tag-report", ["report", "{dir}/tag.yaml"], ["{dir}/tag.yaml", "python/object/apply:os.system"]),
    # ---- services nobody answers at (before: minutes of retries, raw GCS lines, SIGTERM ignored)
    Case("ray-address", ["run", "{dir}/study.yaml", "--address", NOBODY], [f"no Ray cluster at {NOBODY}"],
         seconds=30),
    Case("ray-address-search", ["search", "{dir}/search.yaml", "--address", NOBODY],
         [f"no Ray cluster at {NOBODY}"], seconds=30),
    Case("ray-address-env", ["run", "{dir}/study.yaml"], [f"no Ray cluster at {NOBODY}"], seconds=30,
         env={"RAY_ADDRESS": NOBODY}),
    Case("ray-address-malformed", ["run", "{dir}/study.yaml", "--address", "head-node"],
         ["--address 'head-node': expected HOST:PORT"], seconds=30),
    Case("tracking-run", ["run", "{dir}/study.yaml", "--tracking-uri", f"http://{NOBODY}"],
         [f"no MLflow tracking server at http://{NOBODY}"], seconds=30),
    Case("tracking-search", ["search", "{dir}/search.yaml", "--tracking-uri", f"http://{NOBODY}"],
         [f"no MLflow tracking server at http://{NOBODY}"], seconds=30),
    Case("tracking-report", ["report", "ff_study", "--tracking-uri", f"http://{NOBODY}"],
         [f"no MLflow tracking server at http://{NOBODY}"], seconds=30),
    Case("tracking-findings", ["findings", "--tracking-uri", f"http://{NOBODY}"],
         [f"no MLflow tracking server at http://{NOBODY}"], seconds=30),
    Case("tracking-list", ["list", "--tracking-uri", f"http://{NOBODY}"],
         [f"no MLflow tracking server at http://{NOBODY}"], seconds=30),
    Case("tracking-estimate", ["estimate", "{dir}/study.yaml", "--tracking-uri", f"http://{NOBODY}"],
         [f"no MLflow tracking server at http://{NOBODY}"], seconds=30),
    Case("tracking-env", ["run", "{dir}/study.yaml"], [f"no MLflow tracking server at http://{NOBODY}"],
         seconds=30, env={"MLFLOW_TRACKING_URI": f"http://{NOBODY}"}),
    Case("tracking-password-hidden", ["list", "--tracking-uri", "http://user:s3cret@127.0.0.1:1"],
         ["no MLflow tracking server at http://user:***@127.0.0.1:1"], seconds=30),
    # ---- values found before anything is written (before: exit 1 after a run directory and caches)
    Case("train-negative-gpus", ["train", "--workers", "2", "--gpus-per-worker", "-1"],
         ["--gpus-per-worker", "got -1"]),
    Case("estimate-concurrency", ["estimate", "{dir}/study.yaml", "--max-concurrent", "-2"],
         ["--max-concurrent must be at least 1, got -2"]),
    Case("train-zero-workers", ["train", "--workers", "0"], ["--workers must be at least 1, got 0"]),
    Case("train-seed", ["train", "--profile", "smoke", "--set", "seed=-1"], ["seed: must be in 0..4294967295, got -1"]),
    Case("train-batch-size", ["train", "--profile", "smoke", "--set", "finetune.batch_size=0"],
         ["finetune.batch_size: must be at least 1, got 0"]),
    Case("train-questions", ["train", "--profile", "smoke", "--set", "data.synth_questions_per_image=-1"],
         ["data.synth_questions_per_image: must be at least 1, got -1"]),
    Case("train-heads", ["train", "--profile", "smoke", "--set", "model.fusion.num_heads=0"],
         ["model.fusion.num_heads: must be at least 1, got 0"]),
    Case("train-real-task", ["train", "--profile", "smoke", "--tasks", "vqa_rad"],
         ["data.root is not set", "vqa_rad"]),
    # a real dataset missing under data.root (before: found by the first trial, after Ray and MLflow started)
    Case("validate-real-task", ["validate", "{dir}/real.yaml"],
         ["{dir}/real.yaml: dataset 'vqa_rad' is real data read from <data.root>/vqa_rad/, and data.root is not set"]),
    Case("validate-real-pretrain", ["validate", "{dir}/real_pretrain.yaml"],
         ["{dir}/real_pretrain.yaml: dataset 'roco' is real data read from <data.root>/roco/"]),
    Case("validate-real-missing-root", ["validate", "{dir}/real.yaml", "--data-root", "/nonexistent/datasets"],
         ["data.root /nonexistent/datasets is not a folder (dataset 'vqa_rad' expects vqa_rad/{{train,val,test}}set.json"]),
    Case("search-real-task", ["search", "{dir}/real_search.yaml"], ["{dir}/real_search.yaml", "data.root is not set"]),
    Case("dry-run-real-task", ["run", "{dir}/real.yaml", "--dry-run"], ["{dir}/real.yaml", "data.root is not set"]),
    Case("dry-run-real-root", ["run", "{dir}/real.yaml", "--dry-run", "--data-root", "{dir}"],
         ["missing {dir}/vqa_rad/trainset.json", "vqa_rad/{{train,val,test}}set.json"]),
    Case("postgres-driver", ["search", "{dir}/search.yaml", "--storage", "postgresql+pg8000://u:pw@localhost/db"],
         ["database driver 'pg8000' is not installed", "pip install 'pg8000'", "postgresql+pg8000://u:***@"]),
    Case("storage-not-a-url", ["search", "{dir}/search.yaml", "--storage", "optuna.db"],
         ["--storage optuna.db: not a database URL"]),
    # ---- servers that cannot listen (before: a traceback and exit 0, or a store made for nothing)
    Case("ui-port", ["ui", "--port", "99999"], ["--port must be 1-65535, got 99999"]),
    Case("server-port", ["server", "--port", "0"], ["--port must be 1-65535, got 0"]),
    Case("server-host", ["server", "--host", "999.999.1.1"], ["--host '999.999.1.1' is not an IP address"]),
    Case("server-foreign-host", ["server", "--host", "192.0.2.1"], ["cannot listen on 192.0.2.1:5000"]),
    Case("server-driver", ["server", "--backend-store-uri", "postgresql+pg8000://u@localhost/db"],
         ["--backend-store-uri", "'pg8000' is not installed"]),
    # ---- a work directory that is a file (before: FileExistsError, exit 1; list exited 0)
    Case("workdir-file-list", ["list", "--workdir", "{dir}/a_file"], ["the work directory {dir}/a_file is a file"]),
    Case("workdir-file-run", ["run", "{dir}/study.yaml", "--workdir", "{dir}/a_file"],
         ["the work directory {dir}/a_file is a file"]),
    Case("workdir-under-file", ["train", "--workdir", "{dir}/a_file/runs"],
         ["a parent of the work directory {dir}/a_file/runs", "{dir}/a_file is a file"]),
    Case("ablate-home-file", ["list"], ["the work directory {dir}/a_file is a file"],
         env={"ABLATE_HOME": "{dir}/a_file"}),
]


@pytest.fixture
def inputs(tmp_path) -> Path:
    """The files the cases point at, in their own folder."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "study.yaml").write_text(SMOKE_STUDY)
    (folder / "search.yaml").write_text(SMOKE_SEARCH)
    (folder / "real.yaml").write_text("name: ff_real\nprofile: smoke\ntasks: [vqa_rad]\n")
    (folder / "real_pretrain.yaml").write_text("name: ff_real\nprofile: smoke\ntasks: [synth_vqa]\n"
                                               "data: {pretrain: roco}\n")
    (folder / "real_search.yaml").write_text(SMOKE_SEARCH.replace("synth_vqa", "vqa_rad"))
    os.mkfifo(folder / "fifo.yaml")
    (folder / "huge.yaml").write_text("values:\n" + "  - 1\n" * 300_000)  # 1.8 MB of 300,000 nodes
    (folder / "latin1.yaml").write_bytes("name: x\ndescription: \u00c9chographie\n".encode("latin-1"))
    (folder / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (folder / "deep.yaml").write_text("a: " + "[" * 20_000 + "]" * 20_000 + "\n")
    (folder / "tag.yaml").write_text('name: !!python/object/apply:os.system ["touch {}"]\n'.format(folder / "hacked"))
    (folder / "a_file").write_text("not a folder\n")
    (folder / "store.db").write_bytes(b"")  # a store that exists (findings looks at its files first)
    return folder


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_fifo() else None)
            for p in sorted(folder.rglob("*"))}


def ablate(argv: list[str], env: dict[str, str], cwd: Path, seconds: float) -> tuple[subprocess.CompletedProcess, float]:
    """`ablate ARGV` in a fresh process, as a user runs it, with this environment plus `env` and
    without a tracking URI, Ray address or ABLATE_HOME of the caller's; killed (the test fails)
    after `seconds`."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "ABLATE_HOME")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ablations.cli", *argv], capture_output=True, text=True,
                          timeout=seconds, cwd=cwd, env={**clean, "PYTHONPATH": str(ROOT), **env})
    return proc, time.monotonic() - started


def ablate_here(argv: list[str], env: dict[str, str], cwd: Path, monkeypatch, capsys) -> tuple[int, str, float]:
    """`main(argv)` in this process, in `cwd`, with the same environment rules as `ablate`."""
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "ABLATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    started = time.monotonic()
    code = main(argv)
    seconds = time.monotonic() - started
    out, err = capsys.readouterr()
    return code, out + err, seconds


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_what_cannot_work_fails_fast_and_clearly(case, inputs, tmp_path, monkeypatch, capsys):
    fill = {"dir": str(inputs), "wd": str(tmp_path / "wd")}
    argv = [a.format(**fill) for a in case.argv]
    if "--workdir" not in argv and "ABLATE_HOME" not in case.env:
        argv += ["--workdir", fill["wd"]]
    env = {k: v.format(**fill) for k, v in case.env.items()}
    before = _snapshot(inputs)
    if case.process:
        proc, seconds = ablate(argv, env, tmp_path, case.seconds)
        code, output = proc.returncode, proc.stdout + proc.stderr
    else:
        code, output, seconds = ablate_here(argv, env, tmp_path, monkeypatch, capsys)
    assert code == case.code, (argv, output[-2000:])
    assert "Traceback" not in output, output[-2000:]
    for fragment in case.expect:
        assert fragment.format(**fill) in output, (fragment, output[-2000:])
    assert seconds < case.seconds
    assert not (tmp_path / "wd").exists(), sorted((tmp_path / "wd").rglob("*"))  # nothing written
    assert _snapshot(inputs) == before  # the inputs untouched, no file made by a YAML tag
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # nothing beside them (mlruns/, mlflow.db)


# --------------------------------------------------------------------------- resources vs the cluster


@pytest.mark.parametrize("resources,fragment", [
    ("{cpu: 1, gpu: 3}", "resources.gpu: a trial asks for 3 GPU(s) on one node, but the cluster has"),
    ("{cpu: 1000}", "resources.cpu: a trial asks for 1000 CPU(s) on one node, but the cluster has"),
    ("{cpu: 2, workers: 4}", "resources.cpu: a trial's 4 workers ask for 8 CPU(s) in all (2 each)"),
])
def test_a_trial_the_cluster_cannot_hold_is_refused_before_anything_is_written(resources, fragment, ray_session,
                                                                               tmp_path, capsys):
    study = tmp_path / "study.yaml"
    study.write_text(f"name: too_big\nprofile: smoke\ntasks: [synth_vqa]\nresources: {resources}\n")
    workdir = tmp_path / "wd"
    started = time.monotonic()
    assert main(["run", str(study), "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "2 CPU(s)" in err and "Traceback" not in err
    assert time.monotonic() - started < 30
    assert not workdir.exists()  # no MLflow store, no lock, no run


def test_the_shortfall_names_the_resource_the_ask_and_what_the_cluster_has():
    from ablations.cluster import shortfall

    nodes = [{"CPU": 4.0, "GPU": 1.0}, {"CPU": 8.0}]
    assert shortfall({"cpu": 4, "gpu": 1}, nodes) is None
    assert shortfall({"cpu": 8}, nodes) is None
    assert shortfall({"cpu": 2, "gpu": 1, "workers": 2}, nodes).startswith(
        "resources.gpu: a trial's 2 workers ask for 2 GPU(s) in all (1 each), but the cluster has 2 node(s) with "
        "12 CPU(s) and 1 GPU(s) in all, at most 8 CPU(s) and 1 GPU(s) on one node")
    # the GPU and the CPUs of one trial must be on the same node
    assert shortfall({"cpu": 8, "gpu": 1}, nodes).startswith("resources.gpu: a trial asks for 1 GPU(s) on one node")


def test_an_autoscaling_cluster_gets_a_bounded_wait_with_a_message(ray_session, monkeypatch):
    from ablations import cluster

    monkeypatch.setenv(cluster.WAIT_ENV, "1")
    monkeypatch.setattr(cluster, "POLL_SECONDS", 0.2)
    said = []
    started = time.monotonic()
    with pytest.raises(cluster.ResourcesUnavailable, match=r"resources\.gpu: .*\(after waiting 1 s\)"):
        cluster.require_resources({"cpu": 1, "gpu": 1}, said.append)
    assert time.monotonic() - started < 10
    assert said and "waiting up to 1 s for the autoscaler to add a node that fits" in said[0]
    cluster.require_resources({"cpu": 1})  # what fits passes at once, without a message


def test_a_port_in_use_is_refused_before_the_server_starts(tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["server", "--port", str(port), "--workdir", str(tmp_path / "wd")]) == 2
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in capsys.readouterr().err
    assert not (tmp_path / "wd").exists()


def test_a_missing_postgres_driver_names_the_package_and_the_extra(monkeypatch):
    """SQLAlchemy imports psycopg2 for postgresql+psycopg2:// and psycopg for postgresql://."""
    import builtins

    from ablations.cli import UsageError
    from ablations.databases import check_driver

    real_import = builtins.__import__

    def without_drivers(name, *args, **kwargs):
        if name.split(".")[0] in ("psycopg2", "psycopg"):
            raise ImportError(f"No module named {name!r}", name=name.split(".")[0])
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_drivers)
    with pytest.raises(UsageError, match=r"driver 'psycopg2' is not installed: pip install 'psycopg2-binary' "
                                         r"\(or pip install 'm3ae-ablate\[postgres\]'\)"):
        check_driver("postgresql+psycopg2://u:pw@db/optuna", "--storage")
    with pytest.raises(UsageError, match=r"driver 'psycopg' is not installed: .*postgresql\+psycopg2://"):
        check_driver("postgresql://u:pw@db/optuna", "--storage")


# --------------------------------------------------------------------------- start-up


def test_the_metric_buffer_has_every_callback_hook():
    """MetricBuffer is a training callback by its hooks, not a subclass (so `ablate list`, which
    imports ablations.tracking, does not import torch): its hooks must keep Callback's signatures."""
    import inspect

    from ablations.tracking import MetricBuffer
    from m3ae.train.callbacks import Callback

    hooks = [name for name in vars(Callback) if name.startswith("on_")]
    assert hooks
    for name in hooks:
        assert list(inspect.signature(getattr(MetricBuffer, name)).parameters) == \
            list(inspect.signature(getattr(Callback, name)).parameters), name


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["run", "--help"]])
def test_light_verbs_start_without_importing_torch(argv, tmp_path):
    code = ("import sys\nfrom ablations.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'ray', 'optuna', 'timm', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, *argv, *(["--workdir", str(tmp_path)] if argv == ["list"] else [])],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------------------- SIGTERM


@pytest.mark.slow
def test_sigterm_stops_a_run_as_ctrl_c_does_and_leaves_nothing_running(tmp_path):
    """A scheduler's SIGTERM in the middle of a study: the process ends within a minute, the
    study run and every trial run end KILLED (none RUNNING), and the lock is released."""
    from mlflow import MlflowClient

    study = tmp_path / "study.yaml"
    study.write_text("name: ff_sigterm\nprofile: smoke\ntasks: [synth_vqa]\nbase: {pretrain.steps: 400}\n")
    workdir = tmp_path / "wd"
    # Output to a file, not a pipe: nobody reads a pipe while we wait, and a run that fills its
    # buffer (64 KB of Ray warnings on a loaded machine) would block before opening a trial.
    log = tmp_path / "run.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "ablations.cli", "run", str(study), "--workdir", str(workdir)],
                                stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_CHDIR_TO_TRIAL_DIR": "0"},
                                start_new_session=True)
    try:
        uri = f"sqlite:///{workdir / 'mlflow.db'}"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # wait until a trial run is open
            time.sleep(2)
            if proc.poll() is not None:
                pytest.fail(f"the run ended (exit {proc.returncode}) before a trial started:\n{log.read_text()[-3000:]}")
            if (workdir / "mlflow.db").exists():
                try:
                    runs = MlflowClient(uri).search_runs(
                        [e.experiment_id for e in MlflowClient(uri).search_experiments()],
                        "tags.`ablate.kind` = 'trial'")
                except Exception:  # noqa: BLE001 - the store is being created
                    continue
                if runs:
                    break
        else:
            pytest.fail(f"no trial started within 240 s; the run printed:\n{log.read_text()[-3000:]}")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text()
    assert proc.returncode == 130, out[-3000:]
    assert "Traceback" not in out
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    statuses = {r.data.tags.get("ablate.kind"): r.info.status for r in runs}
    assert "RUNNING" not in {r.info.status for r in runs}, statuses
    assert statuses["study"] == "KILLED"
