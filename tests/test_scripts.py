"""Research scripts under scripts/ that run at the smoke profile in seconds."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def script(name: str) -> ModuleType:
    """scripts/<name>.py as a module (the scripts are files, not an importable package)."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_word_probe_masks_only_the_chosen_attribute_and_reports_its_accuracy(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "word_probe.py"), "side", "--profile", "smoke",
                          "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=300, check=True)
    assert "side: masking only ['left', 'right']" in out.stdout
    assert "validation accuracy on the side words:" in out.stdout
    assert (tmp_path / "pretrain" / "checkpoint.pt").is_file()


@pytest.fixture(scope="module")
def smoke_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-step smoke pre-training: (its checkpoint, its data and tokenizer cache)."""
    from m3ae.config import apply_overrides, profile
    from m3ae.train import pretrain

    root = tmp_path_factory.mktemp("smoke-pretrain")
    cfg = apply_overrides(profile("smoke"), {"threads": 1, "pretrain.steps": 2, "pretrain.eval_every": 0})
    return pretrain(cfg, root / "pretrain", root / "cache").checkpoint, root / "cache"


def _table(stdout: str) -> dict[str, list[str]]:
    """The rows of the markdown table a script printed: first cell -> the other cells."""
    rows = [line.strip("| ").split(" | ") for line in stdout.splitlines() if line.startswith("| ")]
    return {cells[0]: cells[1:] for cells in rows[1:]}  # rows[0] is the header


def test_itm_grounding_scores_matched_random_and_location_swapped_reports(smoke_checkpoint):
    checkpoint, cache = smoke_checkpoint
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "itm_grounding.py"), str(checkpoint),
                          "--profile", "smoke", "--cache", str(cache)],
                         capture_output=True, text=True, timeout=300, check=True)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in out.stdout.splitlines()
            if line.startswith("| ") and "%" not in line}
    assert set(rows) == {"own report (matched)", "another image (random negative)",
                         "side swapped (left <-> right)", "position swapped (upper <-> lower)"}
    for cells in rows.values():
        assert int(cells[1]) > 0 and 0.0 <= float(cells[2].strip(" |")) <= 100.0


def test_swap_words_exchanges_both_words_and_flags_changed_rows():
    import torch

    swap_words = script("itm_grounding").swap_words

    ids = torch.tensor([[5, 7, 9, 7], [1, 2, 3, 4]])
    swapped, changed = swap_words(ids, 7, 9)
    assert swapped.tolist() == [[5, 9, 7, 9], [1, 2, 3, 4]]
    assert changed.tolist() == [True, False]


def _result(variant, seed, test, val, lr, lr_trial=False):
    return {"variant": variant, "seed": seed, "finetune_lr": lr, "lr_trial": lr_trial,
            "test": {"overall_acc": test}, "val": {"overall_acc": val}, "pretrain_seconds": 0.0,
            "finetune_seconds": 1.0}


def test_pretraining_helps_tunes_scratch_by_validation_not_test():
    helps = script("pretraining_helps")
    TUNED, markdown = helps.TUNED, helps.markdown

    results = [_result("full", 0, 60.0, 61.0, 2e-4), _result("mlm_itm", 0, 58.0, 59.0, 2e-4),
               _result("scratch", 0, 50.0, 52.0, 2e-4),  # the profile's lr
               _result("scratch", 0, 57.0, 51.0, 1e-3, lr_trial=True),  # best on test, worse on validation
               _result("scratch", 0, 54.0, 55.0, 5e-4, lr_trial=True)]  # best on validation: chosen
    text = markdown(results, ["overall_acc"], [0], "# header")
    assert f"{TUNED}: the scratch run with the best validation overall_acc per seed (fine-tuning lr seed 0: 0.0005)" \
        in text
    assert f"| {TUNED} | 54.00 | 54.00 |" in text
    assert "| full − scratch | +10.00 | 10.00 |" in text
    assert f"| full − {TUNED} | +6.00 | 6.00 |" in text


def test_pretraining_helps_runs_at_the_smoke_profile_with_a_tuned_scratch(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "pretraining_helps.py"), "--profile", "smoke",
                          "--seeds", "0", "--jobs", "1", "--threads", "1", "--scratch-lrs", "3e-4",
                          "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, check=True)
    assert "scratch-lr0.0003-s0: overall_acc=" in out.stdout
    table = (tmp_path / "results.md").read_text()
    for row in ("| scratch |", "| full |", "| mlm_itm |", "| scratch (lr tuned) |", "| full − scratch (lr tuned) |"):
        assert row in table
    assert (tmp_path / "full-s0" / "pretrain" / "checkpoint.pt").is_file()
    assert "threads: 1" in (tmp_path / "full-s0" / "config.yaml").read_text()  # --threads reaches every trial


def test_pretraining_helps_refuses_a_negative_thread_count(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "pretraining_helps.py"), "--threads", "-1",
                          "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--threads: expected 0 (all cores) or more, got -1" in out.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_pretraining_helps_rejects_a_bad_setting_before_any_trial(tmp_path):
    workdir = tmp_path / "run"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "pretraining_helps.py"), "--workdir", str(workdir),
                          "--set", "data.synth_vqa_images=100", "--set", "data.synth_vqa_eval_images=300"],
                         capture_output=True, text=True, timeout=60)  # 300 + 300 eval images out of 100
    assert out.returncode == 2 and "data.synth_vqa_images" in out.stderr and "Traceback" not in out.stderr
    assert not workdir.exists()  # nothing written
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "pretraining_helps.py"), "--workdir", str(workdir),
                          "--scratch-lrs=-1e-4"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "trial scratch-lr-0.0001-s0: finetune.lr: must be a finite number > 0" in out.stderr
    assert "Traceback" not in out.stderr and not workdir.exists()


def test_mlm_grounding_scores_masked_words_with_true_and_shuffled_images(smoke_checkpoint):
    from m3ae.analysis import CATEGORIES

    checkpoint, cache = smoke_checkpoint
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "mlm_grounding.py"), str(checkpoint),
                          "--profile", "smoke", "--cache", str(cache)],
                         capture_output=True, text=True, timeout=300, check=True)
    assert "validation pairs: true images" in out.stdout and "image adds" in out.stdout
    rows = _table(out.stdout)
    assert rows and set(rows) <= {*CATEGORIES, "other words"}
    for n, true, shuffled, adds in rows.values():
        assert int(n) > 0 and 0.0 <= float(true) <= 100.0 and 0.0 <= float(shuffled) <= 100.0
        assert float(adds) == pytest.approx(float(true) - float(shuffled), abs=0.11)


def test_word_categories_name_the_scene_attribute_of_synthmed_words(smoke_checkpoint):
    from m3ae.analysis import word_categories
    from m3ae.config import profile
    from m3ae.data import build_tokenizer

    tokenizer = build_tokenizer(profile("smoke"), smoke_checkpoint[1])
    vocab, categories = tokenizer.get_vocab(), word_categories(tokenizer)
    assert categories[vocab["left"]] == "side" and categories[vocab["right"]] == "side"
    assert categories[vocab["upper"]] == "position"
    assert {"modality", "region", "side", "position"} <= set(categories.values())


def test_vqa_by_question_scores_each_question_family(tmp_path):
    FAMILIES = script("vqa_by_question").FAMILIES

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "vqa_by_question.py"), "--profile", "smoke",
                          "--set", "threads=1", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, check=True)
    assert "test: overall_acc " in out.stdout
    rows = _table(out.stdout)
    assert rows and set(rows) <= {name for name, _ in FAMILIES}
    for n, accuracy in rows.values():
        assert int(n) > 0 and 0.0 <= float(accuracy) <= 100.0


def test_finding_probe_trains_a_readout_and_saves_an_oracle_checkpoint(smoke_checkpoint, tmp_path):
    import torch

    from m3ae.train.checkpoint import load_checkpoint

    checkpoint, cache = smoke_checkpoint
    oracle = tmp_path / "oracle.pt"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "finding_probe.py"), "--profile", "smoke",
                          "--set", "threads=1", "--steps", "2", "--cache", str(cache),
                          "--checkpoint", str(checkpoint), "--save", str(oracle)],
                         capture_output=True, text=True, timeout=300, check=True)
    assert "training images; chance: slot empty or not" in out.stdout
    assert "step 2 (" in out.stdout and "kind of a present finding" in out.stdout
    before, after = load_checkpoint(checkpoint)["model"], load_checkpoint(oracle)["model"]
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("vision_encoder.") for k in changed)  # only the encoder is replaced


def test_finding_probe_refuses_save_without_a_trained_encoder(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "finding_probe.py"), "--save",
                          str(tmp_path / "oracle.pt")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--save needs --checkpoint" in out.stderr
    assert not (tmp_path / "oracle.pt").exists()
