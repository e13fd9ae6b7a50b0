"""Research scripts under scripts/ that run at the smoke profile in seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_word_probe_masks_only_the_chosen_attribute_and_reports_its_accuracy(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "word_probe.py"), "side", "--profile", "smoke",
                          "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=300, check=True)
    assert "side: masking only ['left', 'right']" in out.stdout
    assert "validation accuracy on the side words:" in out.stdout
    assert (tmp_path / "pretrain" / "checkpoint.pt").is_file()
