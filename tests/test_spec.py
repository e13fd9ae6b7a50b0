"""Study files: every bad file in tests/data/bad_studies is rejected with a precise
message (file, line, key, expected, closest name), and the shipped studies expand."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablations.cli import main
from ablations.spec import SpecError, load_spec, parse_spec
from ablations.study import expand, trial_table

ROOT = Path(__file__).resolve().parents[1]
BAD = sorted((Path(__file__).parent / "data" / "bad_studies").glob("*.yaml"))
STUDIES = sorted((ROOT / "studies").glob("*.yaml"))

GOOD = """
name: tiny
profile: smoke
base: {finetune.epochs: 1}
factors:
  model.mim.mask_ratio: [0.5, 0.75]
  zip:
    - {model.mim.decoder: [transformer, mlp], model.mim.decoder_depth: [1, 2]}
seeds: [0, 1]
tasks: [synth_vqa]
metric: {name: synth_vqa/overall_acc, mode: max}
"""


def expected_fragment(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: <message fragment>'"
    return first[len("# expect: "):]


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_study_is_rejected_with_a_precise_message(path):
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert expected_fragment(path) in message
    assert str(path) in message  # every problem names the file


def test_validate_exits_2_and_creates_nothing(tmp_path, capsys):
    bad = Path(__file__).parent / "data" / "bad_studies" / "bad_path.yaml"
    assert main(["validate", str(bad), "--workdir", str(tmp_path / "runs")]) == 2
    assert "did you mean model.mim.mask_ratio?" in capsys.readouterr().err
    assert main(["run", str(bad), "--workdir", str(tmp_path / "runs")]) == 2
    assert not (tmp_path / "runs").exists()


def test_several_problems_are_reported_together():
    text = GOOD.replace("seeds: [0, 1]", "seeds: [0, 0]").replace("tasks: [synth_vqa]", "tasks: [synth_vqa, cls]")
    with pytest.raises(SpecError) as error:
        parse_spec(text, "x.yaml")
    lines = str(error.value).splitlines()
    assert any("x.yaml:10: tasks[1]: unknown fine-tuning task 'cls'" in line for line in lines)
    assert any("x.yaml:9: seeds: seeds repeat" in line for line in lines)


def test_expansion_crosses_the_grid_with_zip_groups_and_seeds():
    spec = parse_spec(GOOD, "tiny.yaml")
    trials = expand(spec)
    assert len(trials) == 2 * 2 * 2 == spec.num_trials()
    settings = {(t.factors["model.mim.mask_ratio"], t.factors["model.mim.decoder"],
                 t.factors["model.mim.decoder_depth"], t.seed) for t in trials}
    assert (0.75, "mlp", 2, 1) in settings and (0.5, "transformer", 1, 0) in settings
    assert not any(s[1] == "mlp" and s[2] == 1 for s in settings)  # zipped, not crossed
    for t in trials:
        assert t.config.model.mim.mask_ratio == t.factors["model.mim.mask_ratio"]
        assert t.config.seed == t.seed and t.config.finetune.epochs == 1
        assert t.config.finetune.tasks == ("synth_vqa",)
    assert len({t.trial_id for t in trials}) == 8
    assert [t.trial_id for t in expand(parse_spec(GOOD, "again.yaml"))] == [t.trial_id for t in trials]


def test_a_fine_tune_only_factor_shares_pretraining_per_seed():
    spec = parse_spec(GOOD.replace("model.mim.mask_ratio", "finetune.lr").replace("[0.5, 0.75]", "[0.001, 0.0005]")
                      .replace("  zip:\n    - {model.mim.decoder: [transformer, mlp], model.mim.decoder_depth: [1, 2]}\n",
                               ""), "ft.yaml")
    trials = expand(spec)
    assert len(trials) == 4
    assert len({t.pretrain_key for t in trials}) == 2  # one per seed
    assert "(shared by 2)" in trial_table(spec, trials)


def test_profile_override_changes_the_trials():
    smoke = expand(parse_spec(GOOD, "a.yaml"))
    laptop = expand(parse_spec(GOOD, "a.yaml", profile_name="laptop"))
    assert laptop[0].config.pretrain.steps != smoke[0].config.pretrain.steps
    assert {t.trial_id for t in smoke}.isdisjoint(t.trial_id for t in laptop)


PAPER_ABLATIONS = {"mask_ratio", "recon_layer", "decoder", "objectives"}
PAPER_CLAIM_GRIDS = {"mask_ratio_grid"}  # the abstract's claim over a 4 x 3 grid


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_every_shipped_study_validates_and_dry_runs(path, tmp_path, capsys):
    text = path.read_text()
    if "kind: search" in text:
        pytest.skip("a search file (tested with ablate search)")
    spec = load_spec(path)
    assert text.lstrip().startswith("#"), "a study starts with a comment giving its rationale"
    assert spec.profile == "laptop" and len(spec.initial_seeds) >= 2
    if path.stem in PAPER_ABLATIONS:  # the paper's four: its finding beside ours, < 20 min on 2 cores
        assert spec.reference is not None and spec.reference.ranking
        assert spec.adaptive is not None and spec.adaptive.min_effect > 0  # seeds where the ranking is open
        assert len(expand(spec)) <= 8 and spec.num_trials() <= 16  # first round; at most (--budget 20 holds it)
    elif path.stem in PAPER_CLAIM_GRIDS:  # a paper claim over a grid: long, run under --budget
        assert spec.reference is not None and spec.reference.ranking
        assert spec.adaptive is not None and spec.num_trials() <= 3 * len(expand(spec)) // spec.adaptive.start
    else:  # extensions beyond the paper: sized for < 30 min on 2 cores
        assert spec.num_trials() <= 16
    assert main(["run", str(path), "--dry-run", "--workdir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert f"{spec.num_trials()} trials" in out
    assert not (tmp_path / "runs").exists()  # a dry run creates nothing


def test_tasks_and_metric_default_to_the_profile_and_a_bare_metric_names_the_first_task():
    text = "name: d\nprofile: smoke\nmetric: {name: open_acc}\n"
    spec = parse_spec(text, "d.yaml")
    assert spec.tasks == ["synth_vqa"] and spec.metric.name == "synth_vqa/open_acc"
    spec = parse_spec("name: d\nprofile: smoke\ntasks: [synth_cls]\n", "d.yaml")
    assert (spec.metric.name, spec.metric.mode) == ("synth_cls/acc", "max")


def test_a_shipped_study_becomes_paper_scale_with_profile_and_data_root_only(tmp_path):
    spec = load_spec(ROOT / "studies" / "mask_ratio.yaml", "paper", str(tmp_path))
    assert spec.tasks == ["vqa_rad"] and spec.metric.name == "vqa_rad/overall_acc"
    trial = expand(spec)[0]
    assert trial.config.data.root == str(tmp_path) and trial.config.data.pretrain == "roco+medicat"
    assert trial.config.model.fusion.num_layers == 6


@pytest.mark.parametrize("seeds, message", [
    ("{start: 1, max: 4, min_effect: 1.0}", "seeds.start: input should be greater than or equal to 2, got 1"),
    ("{start: 3, max: 2, min_effect: 1.0}", "seeds.max: must be at least start (3), got 2"),
    ("{start: 2, max: 4, min_effect: 0}", "seeds.min_effect: input should be greater than 0, got 0"),
    ("{start: 2, max: 4, min_effect: -0.5}", "seeds.min_effect: input should be greater than 0, got -0.5"),
    ("{start: 2, max: 4}", "seeds.min_effect: missing"),
    ("{start: 2, max: 4, min_efect: 1}", "did you mean 'min_effect'?"),
])
def test_adaptive_seeds_are_checked(seeds, message, tmp_path, capsys):
    study = tmp_path / "s.yaml"
    study.write_text(f"name: s\nprofile: smoke\nfactors: {{model.mim.mask_ratio: [0.5, 0.75]}}\nseeds: {seeds}\n")
    assert main(["validate", str(study)]) == 2
    err = capsys.readouterr().err
    assert f"{study}:4: " in err and message in err


def test_adaptive_seeds_start_with_the_first_round_and_count_the_most():
    spec = parse_spec("name: s\nprofile: smoke\nfactors: {model.mim.mask_ratio: [0.5, 0.75]}\n"
                      "seeds: {start: 2, max: 5, min_effect: 0.5}\n", "s.yaml")
    assert spec.initial_seeds == [0, 1] and spec.max_seeds == 5 and spec.num_trials() == 10
    assert [t.seed for t in expand(spec)] == [0, 1, 0, 1]
    plan = spec.seed_plan()
    assert (plan.start, plan.max, plan.min_effect, plan.alpha) == (2, 5, 0.5, 0.05)
    fixed = parse_spec("name: s\nprofile: smoke\nseeds: [0, 1, 2]\n", "s.yaml").seed_plan()
    assert fixed.one_look and fixed.min_effect is None
