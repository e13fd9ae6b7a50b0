"""Run names: unique within every study, short enough to read when the MLflow runs table cuts them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate_common.naming import factor_aliases, format_value, run_name, setting_name
from ablations.spec import SpecError, load_spec, parse_spec

STUDIES = sorted(p for p in (Path(__file__).resolve().parents[1] / "studies").glob("*.yaml")
                 if "kind: search" not in p.read_text())


def test_paths_that_end_alike_get_the_part_that_tells_them_apart():
    aliases = factor_aliases(["model.mim.mask_ratio", "model.mlm.mask_ratio", "finetune.lr"])
    assert aliases == {"model.mim.mask_ratio": "img", "model.mlm.mask_ratio": "txt", "finetune.lr": "lr"}
    name = run_name({"model.mim.mask_ratio": 0.25, "model.mlm.mask_ratio": 0.15, "finetune.lr": 0.0002}, 0, aliases)
    assert name == "img.25-txt.15-lr.0002-s0"  # was mask_ratio=0.25-mask_ratio=0.15-lr=0.0002-s0


def test_switches_negative_numbers_and_sampled_floats_read_plainly():
    aliases = factor_aliases(["pretrain.enabled", "model.itm.enabled", "model.mim.recon_layer"])
    assert setting_name({"pretrain.enabled": False, "model.itm.enabled": True, "model.mim.recon_layer": -1},
                        aliases) == "nopretrain-itm-recon_layer=-1"
    assert [format_value(v) for v in (0.5753756195702879, 4.0, True, None)] == ["0.575", "4", "true", "-"]


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_every_study_names_its_trials_uniquely(study):
    spec = load_spec(study)
    aliases = factor_aliases(spec.factor_paths, spec.alias)
    names = [run_name(combo, seed, aliases) for combo in spec.combinations() for seed in spec.seeds]
    assert len(set(names)) == len(names)


def test_a_study_file_alias_wins_and_is_checked():
    text = """
name: a
profile: smoke
factors: {model.mim.mask_ratio: [0.5, 0.75], model.mlm.mask_ratio: [0.15]}
alias: {model.mim.mask_ratio: image}
"""
    spec = parse_spec(text)
    assert factor_aliases(spec.factor_paths, spec.alias)["model.mim.mask_ratio"] == "image"
    with pytest.raises(SpecError, match="alias.model.mim.ratio: not a factor of this study"):
        parse_spec(text.replace("alias: {model.mim.mask_ratio", "alias: {model.mim.ratio"))
    with pytest.raises(SpecError, match="'x' names two factors"):
        parse_spec(text.replace("image}", "x, model.mlm.mask_ratio: x}"))
