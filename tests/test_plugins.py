"""Components from outside the package: entry points, `plugins:` in study files, cache keys, Ray workers.

Plugins register into the process-wide registries; the `_forget` fixture removes
what a test registered so later tests see only the built-ins.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from ablations import tracking
from ablations.cli import main
from m3ae import plugins, registry
from m3ae.config import ConfigError, apply_overrides, profile
from m3ae.keys import pretrain_key, trial_id

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "grid_masking"
PYTHON = sys.executable


@pytest.fixture
def forget(monkeypatch):
    """Undo the registrations and imports of plugin modules a test makes."""
    registry.ensure_loaded()  # the built-ins stay
    before = {id(r): dict(r._factories) for r in registry.all_registries()}
    modules = set(sys.modules)
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    monkeypatch.setattr(plugins, "_loaded", [])
    monkeypatch.setattr(plugins, "_identities", {})
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for r in registry.all_registries():
        for name in set(r._factories) - set(before[id(r)]):
            del r._factories[name]
            r._origins.pop(name, None)
    for name in set(sys.modules) - modules:
        if name.startswith(("grid_masking", "twin_masking", "ep_masking")):
            del sys.modules[name]


def write_plugin(folder: Path, module: str, name: str, body: str = "random_image_mask") -> Path:
    """A plugin module registering image masking `name` (by default MAE's random masking)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}.py"
    path.write_text(textwrap.dedent(f"""\
        from m3ae.model.masking import random_image_mask
        from m3ae.registry import IMAGE_MASKING

        IMAGE_MASKING.register({name!r})({body})
        """))
    return path


def write_study(path: Path, plugins_: list[str] | None, masking: str) -> Path:
    study = {"name": "plugged", "kind": "study", "profile": "smoke", "factors": {"model.mim.masking": [masking]},
             "seeds": [0], "tasks": ["synth_vqa"]}
    if plugins_ is not None:
        study["plugins"] = plugins_
    path.write_text(yaml.safe_dump(study))
    return path


# --------------------------------------------------------------------------- validation


def test_a_study_loads_its_plugin_from_its_folder_and_validates(tmp_path, forget, capsys):
    write_plugin(tmp_path, "twin_masking", "twin")
    study = write_study(tmp_path / "study.yaml", ["twin_masking"], "twin")
    assert main(["validate", str(study)]) == 0, capsys.readouterr().err
    assert "twin" in registry.IMAGE_MASKING.names()


def test_a_component_without_its_plugin_names_the_choices_plugins_included(tmp_path, forget, capsys):
    write_plugin(tmp_path, "twin_masking", "twin")
    study = write_study(tmp_path / "study.yaml", None, "twin")
    assert main(["validate", str(study), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "unknown image masking 'twin'" in err and "'block'" in err and "Traceback" not in err
    plugins.load(["twin_masking"], [tmp_path])  # once loaded, the choices list it
    assert "'twin'" in registry.IMAGE_MASKING.unknown_message("twim")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("entry, expected", [
    ("no_such_plugin_module", "plugin 'no_such_plugin_module': no module of that name"),
    ("not a module", "expected an importable module name"),
])
def test_a_plugin_that_does_not_import_is_exit_2_naming_it(tmp_path, forget, capsys, entry, expected):
    study = write_study(tmp_path / "study.yaml", [entry], "random")
    assert main(["run", str(study), "--dry-run", "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert f"{study}:" in err and "plugins[0]" in err and expected in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()


def test_a_plugin_whose_own_import_fails_is_named_with_the_error(tmp_path, forget, capsys):
    (tmp_path / "twin_masking.py").write_text("import not_installed_anywhere\n")
    study = write_study(tmp_path / "study.yaml", ["twin_masking"], "random")
    assert main(["validate", str(study)]) == 2
    err = capsys.readouterr().err
    assert "plugin 'twin_masking' failed to import" in err and "not_installed_anywhere" in err


def test_a_search_file_takes_plugins_too(tmp_path, forget, capsys):
    write_plugin(tmp_path, "twin_masking", "twin")
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({
        "name": "plugged_search", "kind": "search", "profile": "smoke", "plugins": ["twin_masking"],
        "space": {"model.mim.masking": {"type": "categorical", "choices": ["random", "twin"]}},
        "objectives": [{"metric": "synth_vqa/overall_acc"}], "n_trials": 2, "tasks": ["synth_vqa"]}))
    assert main(["validate", str(search)]) == 0, capsys.readouterr().err
    from ablations.search import load_search

    spec = load_search(search)
    assert spec.as_study({}).plugins == ["twin_masking"]
    assert spec.fingerprint() != spec.model_copy(update={"plugins": []}).fingerprint()


def test_ablate_train_takes_a_plugin_from_the_current_folder(tmp_path_factory, tmp_path, forget, monkeypatch, capsys):
    write_plugin(tmp_path, "twin_masking", "twin")
    monkeypatch.chdir(tmp_path)
    workdir = tmp_path_factory.getbasetemp() / "ablate-train"  # test_train_cli.py's: the data cache is shared
    code = main(["train", "--profile", "smoke", "--workdir", str(workdir), "--run-name", "plugged", "--plugin",
                 "twin_masking", "--set", "model.mim.masking=twin", "--set", "finetune.epochs=1", "--tasks", "synth_cls"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((workdir / "train" / "plugged" / "metrics.json").read_text())
    assert summary["plugins"] == {"twin_masking": plugins.identity("twin_masking")}
    assert main(["train", "--profile", "smoke", "--workdir", str(tmp_path / "w"), "--plugin", "no_such_plugin_x"]) == 2
    assert "plugin 'no_such_plugin_x'" in capsys.readouterr().err and not (tmp_path / "w").exists()


# --------------------------------------------------------------------------- entry points


def test_an_installed_distribution_registers_through_the_entry_point_group(tmp_path, forget, monkeypatch):
    site = tmp_path / "site"
    write_plugin(site, "ep_masking", "ep_grid")
    info = site / "ep_masking-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-masking\nVersion: 1.2.3\n")
    (info / "top_level.txt").write_text("ep_masking\n")
    (info / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\nep_grid = ep_masking\n")
    monkeypatch.syspath_prepend(str(site))

    # nothing imports ep_masking: the unknown name loads the entry points before failing
    cfg = apply_overrides(profile("smoke"), {"model.mim.masking": "ep_grid"})
    assert registry.IMAGE_MASKING.origin("ep_grid") == "ep_masking"
    used = plugins.used_by({"model": {"mim": {"masking": "ep_grid"}}})
    assert list(used) == ["ep_masking"] and used["ep_masking"].startswith("1.2.3+sha256:")
    assert pretrain_key(cfg) != pretrain_key(apply_overrides(profile("smoke"), {"model.mim.masking": "random"}))
    # a study naming it without `plugins:`: its trials import the entry point's module in the workers
    study = write_study(tmp_path / "study.yaml", None, "ep_grid")
    from ablations.spec import load_spec
    from ablations.study import expand

    assert {t.plugins for t in expand(load_spec(study))} == {("ep_masking",)}
    with pytest.raises(ConfigError, match="expected one of .*'ep_grid'"):
        apply_overrides(profile("smoke"), {"model.mim.masking": "ep_gird"})


def test_a_broken_entry_point_is_named(tmp_path, forget, monkeypatch):
    site = tmp_path / "site"
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\nbroken = ep_masking_missing\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(ConfigError, match="entry point broken = ep_masking_missing .*broken-plugin.* failed to load"):
        apply_overrides(profile("smoke"), {"model.mim.masking": "nothing_provides_this"})


# --------------------------------------------------------------------------- cache keys


KEYS = """
import sys
from m3ae import plugins
from m3ae.config import apply_overrides, profile
from m3ae.keys import pretrain_key, trial_id
plugins.load(["twin_masking"], [sys.argv[1]])
for masking in ("twin", "random"):
    cfg = apply_overrides(profile("smoke"), {"model.mim.masking": masking})
    print(pretrain_key(cfg), trial_id(cfg))
"""


@pytest.mark.slow
def test_two_implementations_under_one_name_never_share_a_pretraining(tmp_path):
    """Two folders hold a `twin_masking` registering `twin` with different code: separate processes
    (as two studies would be) get different keys for `twin`, and the built-ins keep theirs."""
    write_plugin(tmp_path / "a", "twin_masking", "twin")
    write_plugin(tmp_path / "b", "twin_masking", "twin", body="lambda *a, **k: random_image_mask(*a, **k)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def keys(folder: str) -> list[list[str]]:
        out = subprocess.run([PYTHON, "-c", KEYS, str(tmp_path / folder)], env=env, capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return [line.split() for line in out.stdout.splitlines()]

    (twin_a, random_a), (twin_b, random_b) = keys("a"), keys("b")
    assert twin_a[0] != twin_b[0] and twin_a[1] != twin_b[1]
    builtin = profile("smoke")
    assert random_a == random_b == [pretrain_key(builtin), trial_id(builtin)]


# --------------------------------------------------------------------------- Ray workers


@pytest.mark.slow
def test_the_example_study_runs_its_plugin_in_two_ray_workers(tmp_path, ray_session, forget):
    """`ablate run` as its own job on the shared Ray (as on a cluster): the plugin lives only next to
    the study file, so the workers import the copy shipped with the job."""
    workdir = tmp_path / "w"
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_CHDIR_TO_TRIAL_DIR": "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([PYTHON, "-m", "ablations.cli", "run", str(EXAMPLE / "study.yaml"), "--profile", "smoke",
                           "--max-concurrent", "2", "--address", ray_session, "--workdir", str(workdir)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    tracker = tracking.Tracker(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = tracker.client.get_experiment_by_name("grid_masking")
    runs = tracking.latest_trial_runs(tracker, experiment.experiment_id).values()
    by_masking = {run.data.params["model.mim.masking"]: run for run in runs}
    assert set(by_masking) == {"random", "grid"}
    assert all(run.info.status == "FINISHED" and run.data.tags.get("ablate.node") for run in runs)
    grid = by_masking["grid"]
    plugins.load(["grid_masking"], [EXAMPLE])
    assert grid.data.params["plugin.grid_masking"] == plugins.identity("grid_masking")
    assert grid.data.metrics["synth_vqa/overall_acc"] >= 0
    assert grid.data.tags[tracking.PRETRAIN_KEY] != by_masking["random"].data.tags[tracking.PRETRAIN_KEY]


@pytest.mark.slow
def test_a_ray_session_without_the_plugin_is_refused_before_any_trial(tmp_path, ray_session, forget, capsys):
    """This process's Ray was started without the plugin: its workers cannot import it, so nothing runs."""
    workdir = tmp_path / "w"
    code = main(["run", str(EXAMPLE / "study.yaml"), "--profile", "smoke", "--workdir", str(workdir)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "plugin" in err and "grid_masking" in err and "no trial was started" in err
    assert not workdir.exists()  # the cluster is checked before the MLflow store or any run is made


@pytest.mark.slow
def test_a_search_runs_its_plugin_component_in_ray_tasks(tmp_path, ray_session):
    """`ablate search` as its own job on the shared Ray: an Optuna trial of the plugin's choice runs in a Ray task."""
    folder = tmp_path / "mine"  # the plugin sits beside the search file only: not in the cwd, not installed
    folder.mkdir()
    shutil.copy(EXAMPLE / "grid_masking.py", folder / "grid_masking.py")
    search = folder / "search.yaml"
    search.write_text(yaml.safe_dump({
        "name": "plugged_search", "kind": "search", "profile": "smoke", "plugins": ["grid_masking"],
        "space": {"model.mim.masking": {"type": "categorical", "choices": ["grid"]}},
        "objectives": [{"metric": "synth_vqa/overall_acc"}], "n_trials": 1, "tasks": ["synth_vqa"]}))
    workdir = tmp_path / "w"
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_CHDIR_TO_TRIAL_DIR": "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([PYTHON, "-m", "ablations.cli", "search", str(search), "--address", ray_session,
                           "--workdir", str(workdir)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tracker = tracking.Tracker(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = tracker.client.get_experiment_by_name("plugged_search")
    (run,) = tracking.latest_trial_runs(tracker, experiment.experiment_id).values()
    assert run.info.status == "FINISHED" and run.data.params["model.mim.masking"] == "grid"
    assert run.data.params["plugin.grid_masking"].startswith("sha256:") and run.data.tags.get("ablate.node")
