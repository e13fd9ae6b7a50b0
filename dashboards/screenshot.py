"""A PNG of a page's top, taken with headless Chromium when it is installed.

MLflow's artifact view shows HTML in a sandboxed frame, where a page that runs scripts (Plotly)
may stay blank; a picture of the dashboard's top beside it shows something in any case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PNG_ENV = "ABLATE_DASHBOARD_PNG"  # "0": no picture (the test suite: ~4 s of Chromium per study run)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=8000")


def browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot(page: Path, png: Path, width: int = 1400, height: int = 1000, timeout: float = 120) -> Path:
    """Render `page` (an HTML file) and write its top `width` x `height` pixels to `png`.
    Raises FileNotFoundError without Chromium, RuntimeError when it fails."""
    found = browser()
    if found is None:
        raise FileNotFoundError("no Chromium on PATH (Debian: apt-get install chromium)")
    png = Path(png).absolute()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([found, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                               f"--screenshot={png}", Path(page).absolute().as_uri()],
                              capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not png.is_file():
        raise RuntimeError(f"Chromium could not render {page}: {done.stderr.strip()[-300:]}")
    return png


def log_top(tracker, run_id: str, page: Path) -> Path | None:
    """Log the top of `page` as dashboard.png on the run, when Chromium is installed (None otherwise,
    or when it fails: the picture is a courtesy beside dashboard.html)."""
    if browser() is None or os.environ.get(PNG_ENV, "1") == "0":
        return None
    png = Path(page).with_suffix(".png")
    try:
        screenshot(page, png)
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return None
    tracker.log_file(run_id, png, name="dashboard.png")
    return png
