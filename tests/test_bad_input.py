"""Bad input costs no compute and leaves no trace: every file of the corpus in
tests/data/bad_studies and tests/data/bad_searches is refused by `ablate validate` and by
the command that would run it (`ablate run` / `ablate search`) with exit code 2 and a
message naming the key (each file's first line: `# expect: <fragment>`), and nothing is
created: no work directory, no MLflow store, no file from a YAML tag that tried to run a
command. Real-format datasets in the wrong encoding are an error naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablations.cli import main
from fixtures.real_datasets import WRITERS
from m3ae.config import apply_overrides, profile
from m3ae.data import DataFormatError, build_dataset

DATA = Path(__file__).parent / "data"
STUDIES = sorted((DATA / "bad_studies").glob("*.yaml"))
SEARCHES = sorted((DATA / "bad_searches").glob("*.yaml"))
CASES = [(p, "run") for p in STUDIES] + [(p, "search") for p in SEARCHES]


def expected_fragment(path: Path, verb: str) -> str:
    """The first line's `# expect: <fragment>`, or a later `# expect (VERB): <fragment>` for one verb."""
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# expect: "), f"{path.name}: first line must be '# expect: <message fragment>'"
    override = next((line for line in lines if line.startswith(f"# expect ({verb}): ")), None)
    return override.split(": ", 1)[1] if override else lines[0][len("# expect: "):]


def test_the_corpus_is_large_and_covers_the_kinds():
    assert len(CASES) >= 30
    names = {p.stem for p, _ in CASES}
    for kind in ("not_yaml", "tab_indent", "wrong_type", "unknown_key", "bad_path", "bad_value", "empty_factor",
                 "empty_seeds", "unknown_task", "metric_no_task", "python_tag", "huge_grid", "alias_bomb",
                 "name_traversal", "name_dotdot"):
        assert kind in names, kind


@pytest.mark.parametrize("path,verb", CASES, ids=[f"{p.parent.name}/{p.stem}" for p, _ in CASES])
def test_a_bad_file_is_refused_with_exit_2_and_creates_nothing(path, verb, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a command a YAML tag managed to run would leave its file here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workdir = tmp_path / "runs"
    for argv in (["validate", str(path)], [verb, str(path)]):
        fragment = expected_fragment(path, argv[0])
        if fragment == "ACCEPTED":  # bad only for the other verb (a valid study given to `ablate search`)
            assert main([*argv, "--workdir", str(workdir)]) == 0, argv
            capsys.readouterr()
            continue
        assert main([*argv, "--workdir", str(workdir)]) == 2, argv
        captured = capsys.readouterr()
        assert fragment in captured.err, (argv, captured.err)
        assert str(path) in captured.err  # the message names the file
        assert "Traceback" not in captured.err
    assert not workdir.exists()  # no work directory, so no MLflow store, cache or lock either
    assert list(tmp_path.iterdir()) == []  # and nothing else: no mlruns/, no ablate-was-hacked


def test_a_huge_grid_is_refused_without_being_expanded():
    # 10^12 combinations: counting them is instant, building them would never finish.
    import time

    from ablations.spec import SpecError, parse_spec

    ratios = "[" + ", ".join(str(i / 1000) for i in range(1, 1000)) + "]"
    rates = "[" + ", ".join(f"{i}.0e-6" for i in range(1, 1001)) + "]"
    text = (f"name: big\nprofile: smoke\ntasks: [synth_vqa]\nfactors:\n  model.mim.mask_ratio: {ratios}\n"
            f"  model.mlm.mask_ratio: {ratios}\n  finetune.lr: {rates}\n  pretrain.lr: {rates}\n")
    started = time.monotonic()
    with pytest.raises(SpecError, match="more than max_trials 64"):
        parse_spec(text, "big.yaml")
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("name,relative", [
    ("roco", "roco/train/radiology/captions.txt"),
    ("vqa_rad", "vqa_rad/trainset.json"),
    ("medvqa_2019", "medvqa_2019/train/QA/Organ.csv"),
    ("melinda", "melinda/train.csv"),
])
def test_a_dataset_file_in_latin1_names_the_file_and_line(name, relative, tmp_path):
    WRITERS[name](tmp_path)
    cfg = apply_overrides(profile("smoke"), {"data.root": str(tmp_path)})
    path = tmp_path / relative
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    # "Échographie" written by a latin-1 exporter, on the second line of the file
    lines.insert(1, "\u00c9chographie r\u00e9nale" + ("\n" if name != "vqa_rad" else " "))
    if name == "vqa_rad":  # JSON: keep it valid JSON apart from the bytes, inside a string value
        text = text.replace('"question": "', '"question": "\u00c9chographie ', 1)
        path.write_bytes(text.encode("latin-1"))
        line = text[:text.index("\u00c9")].count("\n") + 1
    else:
        path.write_bytes("".join(lines).encode("latin-1"))
        line = 2
    with pytest.raises(DataFormatError) as error:
        build_dataset(name, "train", cfg, None, tmp_path / "cache")
    message = str(error.value)
    assert f"{path}:{line}: not UTF-8 text (byte 0xc9" in message and "iconv" in message
