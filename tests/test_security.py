"""Security: servers bind 127.0.0.1 unless asked, YAML is loaded safely, checkpoints load
with weights_only=True, names never lead outside the work directory, and credentials in
URIs are redacted wherever they are printed or logged. (A full run against a tracking
server whose URI holds a password, with nothing leaked into MLflow or the console:
tests/test_faults.py::test_a_tracking_server_outage_mid_trial_loses_no_metrics_and_leaks_no_password.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ablations import tracking
from ablations.cli import build_parser, main
from ablations.lock import study_lock
from ablations.paths import UnsafePath, within
from ablations.trial import work_paths

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("ablations", "m3ae", "dashboards", "scripts", "benchmarks")
           for p in sorted((ROOT / folder).rglob("*.py"))]


@pytest.mark.parametrize("uri,shown", [
    ("http://user:secret@127.0.0.1:5000", "http://user:***@127.0.0.1:5000"),
    ("https://user:secret@mlflow.example.org/path", "https://user:***@mlflow.example.org/path"),
    ("postgresql://u:secret@host/db", "postgresql://u:***@host/db"),
    ("postgresql+psycopg2://u:secret@host:5432/optuna?sslmode=require",
     "postgresql+psycopg2://u:***@host:5432/optuna?sslmode=require"),
    ("mysql://u:p%40secret@h/db", "mysql://u:***@h/db"),
    ("http://127.0.0.1:5000/?token=secret&x=1", "http://127.0.0.1:5000/?token=***&x=1"),
    ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db"),  # nothing to hide: unchanged
    ("http://user@127.0.0.1:5000", "http://user@127.0.0.1:5000"),
    ("file:///tmp/x", "file:///tmp/x"),
])
def test_redact_uri_hides_passwords_and_keeps_the_rest(uri, shown):
    assert tracking.redact_uri(uri) == shown
    assert "secret" not in tracking.redact_uri(uri)


def test_the_search_storage_url_goes_through_the_same_redaction():
    from ablate_common.redact import redact_uri as redact

    assert "secret" not in redact("postgresql://u:secret@host/db")
    assert "secret" not in redact("http://user:secret@127.0.0.1:5000")


def test_every_server_verb_binds_127_0_0_1_by_default():
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # argparse keeps its subparsers here
    with_host = {name: sub for name, sub in verbs.items() if any(a.dest == "host" for a in sub._actions)}
    assert "ui" in with_host
    for name, sub in with_host.items():
        (host,) = [a.default for a in sub._actions if a.dest == "host"]
        assert host == "127.0.0.1", name


def test_no_platform_code_binds_every_interface_or_starts_a_server_without_a_host():
    for path in SOURCES:
        text = path.read_text()
        assert not re.search(r"""(default|host)\s*=\s*["']0\.0\.0\.0""", text), path  # binding every interface
        for match in re.finditer(r'"(ui|server)"\s*,', text):  # `mlflow ui` / `mlflow server` commands
            window = text[match.start():match.start() + 600]
            if '"mlflow"' in text[max(0, match.start() - 80):match.start()]:
                assert '"--host"' in window, f"{path}: a server started without --host"


def test_yaml_is_only_ever_loaded_safely():
    unsafe = re.compile(r"yaml\.(unsafe_load|full_load|load_all|load)\s*\((?![^)]*Loader=yaml\.SafeLoader)|"
                        r"Loader\s*=\s*yaml\.(Loader|FullLoader|UnsafeLoader)|yaml\.(Unsafe|Full)?Loader\b\(")
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert not unsafe.search(line), f"{path}:{number}: {line.strip()}"


def test_checkpoints_load_with_weights_only():
    calls = 0
    for path in SOURCES:
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start():text.index(")", match.start()) + 1]
            assert "weights_only=True" in call, f"{path}: {call}"
            calls += 1
    assert calls >= 1  # the checkpoint loader is found (the grep looks where it should)


def test_a_pickled_object_in_a_checkpoint_is_refused(tmp_path):
    import torch

    from m3ae.train.checkpoint import load_checkpoint

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "was-hacked",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Payload()}, path)
    with pytest.raises(Exception):  # noqa: B017 - torch's weights-only unpickler refuses the global
        load_checkpoint(path)
    assert not (tmp_path / "was-hacked").exists()


@pytest.mark.parametrize("name", ["../../etc", "..", ".", "a/b", "/etc", "a\\b", "", "x\0y"])
def test_names_never_escape_the_work_directory(tmp_path, name):
    with pytest.raises(UnsafePath):
        within(tmp_path, "trials", name)
    with pytest.raises(UnsafePath):
        work_paths(tmp_path, name, "abc123")
    with pytest.raises(UnsafePath):
        work_paths(tmp_path, "study", name)
    if "/" in name or "\\" in name or "\0" in name:  # "..lock" and ".lock" are plain file names
        with pytest.raises(UnsafePath), study_lock(tmp_path, name):
            pass
    assert not (tmp_path.parent / "etc").exists()


def test_a_symlink_out_of_the_work_directory_is_refused(tmp_path):
    (tmp_path / "runs" / "trials").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "runs" / "trials" / "study").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafePath, match="resolves outside"):
        within(tmp_path / "runs", "trials", "study", "abc123")
    assert within(tmp_path / "runs", "trials", "other", "abc123") == tmp_path / "runs" / "trials" / "other" / "abc123"


def test_a_study_name_that_would_escape_is_refused_before_anything_exists(tmp_path, capsys):
    study = tmp_path / "s.yaml"
    study.write_text("name: ../../escape\nprofile: smoke\ntasks: [synth_vqa]\n")
    assert main(["run", str(study), "--workdir", str(tmp_path / "runs")]) == 2
    assert "name: expected letters" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "escape").exists()


def test_redact_text_cleans_uris_inside_messages():
    from ablate_common.redact import redact_text

    text = ("API request to http://user:secret@127.0.0.1:9/api/2.0/x failed; storage "
            "postgresql+psycopg2://u:secret@db:5432/o?password=secret&sslmode=require")
    cleaned = redact_text(text)
    assert "secret" not in cleaned
    assert "http://user:***@127.0.0.1:9/api/2.0/x" in cleaned and "sslmode=require" in cleaned


def test_tracker_errors_never_carry_the_password():
    tracker = tracking.Tracker("http://user:secret@127.0.0.1:9", retry_seconds=0)
    with pytest.raises(tracking.TrackingUnavailable) as error:
        tracker.experiment("x")
    assert "user:***@127.0.0.1:9" in str(error.value) and "secret" not in str(error.value)


def _files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*")) if folder.exists() else set()


@pytest.mark.parametrize("name", ["../../escaped_run", "..", "a/b", "/tmp/escaped_abs_run", "a\\b"])
def test_train_run_name_is_a_folder_name_never_a_path(tmp_path, capsys, name):
    workdir = tmp_path / "deep" / "runs"
    if name.startswith("/"):
        name = str(tmp_path / "escaped_abs_run")
    code = main(["train", "--profile", "smoke", "--workdir", str(workdir), "--run-name", name])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "plain name" in err
    assert _files_under(tmp_path) == set()  # nothing written anywhere, inside the work dir or out


@pytest.mark.parametrize("name", ["../../escaped_report", "/Users/x/exp", "a/b"])
def test_report_of_a_store_experiment_whose_name_is_a_path_writes_nothing_outside(tmp_path, capsys, name):
    import mlflow

    workdir = tmp_path / "deep" / "runs"
    workdir.mkdir(parents=True)
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    client.create_experiment(name)  # a server's experiment, possibly renamed by someone else
    before = _files_under(tmp_path)
    assert main(["report", name, "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "Traceback" not in err
    assert _files_under(tmp_path) == before
    assert not (tmp_path / "escaped_report.html").exists()
