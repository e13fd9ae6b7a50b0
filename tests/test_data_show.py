"""`ablate data show`: a PNG grid of samples, through the real CLI entry point."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ablations.cli import main
from ablations.commands.data import grid_size


def test_data_show_writes_the_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = main(["data", "show", "synth_vqa", "--n", "16", "--out", str(out), "--profile", "smoke",
                 "--workdir", str(tmp_path / "work")])
    assert code == 0 and out.is_file()
    assert str(out) in capsys.readouterr().out
    with Image.open(out) as grid:
        # 4 columns of (128 px image + 340 px text + 8 px gap) + 8; title 28 + 8 + 4 rows of 136
        assert grid.size == grid_size(16) == (8 + 4 * 476, 36 + 4 * 136)
        assert grid.mode == "RGB" and len(np.unique(np.asarray(grid.convert("L")))) > 20  # images and text, not blank
    assert list((tmp_path / "work" / "cache" / "synthmed").glob("synth_vqa-*"))  # generated data is cached


def test_data_show_default_out_and_bad_input(tmp_path, capsys):
    work = tmp_path / "work"
    assert main(["data", "show", "synth_pairs", "--n", "3", "--split", "val", "--profile", "smoke",
                 "--workdir", str(work)]) == 0
    with Image.open(work / "data" / "synth_pairs_val.png") as grid:
        assert grid.size == grid_size(3) == (8 + 3 * 476, 36 + 136)
    assert main(["data", "show", "synth_vqaa", "--profile", "smoke", "--workdir", str(work)]) == 2
    assert "did you mean 'synth_vqa'" in capsys.readouterr().err
    assert main(["data", "show", "synth_vqa", "--n", "0", "--workdir", str(work)]) == 2
