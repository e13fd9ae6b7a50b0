"""The registries' table of built-in names agrees with what the component modules register,
and checking names (a config, a study file) imports no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from m3ae import registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("reg", registry.all_registries(), ids=lambda r: r.kind)
def test_declared_builtins_are_what_their_module_registers(reg):
    registry.ensure_loaded()
    registered = {name for name in reg._factories if reg._origins[name].split(".")[0] == "m3ae"}
    assert registered == set(reg.builtins)
    assert {reg._origins[name] for name in reg.builtins} == {reg.module}
    assert all(reg.origin(name) == reg.module for name in reg.builtins)


def test_timm_vit_names_file_is_timms_own_list():
    import timm

    from m3ae.config import TIMM_VIT_NAMES

    assert TIMM_VIT_NAMES.read_text().split() == timm.list_models(module="vision_transformer")


def test_a_builtin_name_is_known_before_its_module_is_imported_and_get_imports_it():
    code = ("import sys; from m3ae import registry; "
            "assert 'block' in registry.IMAGE_MASKING and 'm3ae.model.masking' not in sys.modules; "
            "assert registry.IMAGE_MASKING.origin('block') == 'm3ae.model.masking'; "
            "f = registry.IMAGE_MASKING.get('block'); assert f.__module__ == 'm3ae.model.masking'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


@pytest.mark.parametrize("study", ["studies/mask_ratio.yaml", "studies/search_masking.yaml"])
def test_validating_a_study_imports_no_torch(study):
    code = (f"import sys; from ablations.cli import main; rc = main(['validate', {study!r}]); "
            "print('torch' in sys.modules, 'timm' in sys.modules); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert ": ok - " in out.stdout
    assert out.stdout.splitlines()[-1] == "False False"


def test_building_every_profile_imports_no_torch():
    code = ("import sys; from m3ae.config import PROFILES, profile; from m3ae.keys import pretrain_key, trial_id; "
            "[(pretrain_key(profile(p)), trial_id(profile(p))) for p in PROFILES]; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == "False"
