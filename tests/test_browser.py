"""The dashboards in a real headless Chromium: every figure renders, no JavaScript error, a screenshot.

Chromium comes from Debian (`bash .ci/system-deps.sh`, run by `make test`); without it these tests
skip and say why.
"""

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest

from dashboards.report import build_report
from dashboards.search_report import build_search_report
from dashboards.sample_store import write_sample_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]
PLOT_DIV = re.compile(r'<div[^>]*class="[^"]*\bjs-plotly-plot\b[^"]*"')

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run `bash .ci/system-deps.sh` as root"),
]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """A study dashboard and a search dashboard built from real MLflow and Optuna stores."""
    root = tmp_path_factory.mktemp("browser")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    write_sample_study(uri, "masking", seeds=(0, 1, 2), curve_steps=6, failed=1, pruned=1)
    storage = f"sqlite:///{root / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="masking", storage=storage, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("model.mim.mask_ratio", 0.1, 0.9), t.suggest_int("layer", 1, 6)),
                   n_trials=6)
    return {"study": build_report("masking", uri, root / "study.html"),
            "search": build_search_report("masking", uri, storage, root / "search.html")}


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=180, check=False)


def rendered_plots(dom: str) -> tuple[int, int]:
    """(plot divs, plot divs with an svg.main-svg inside): plot divs do not nest, so each one's
    content runs until the next."""
    starts = [m.start() for m in PLOT_DIV.finditer(dom)] + [len(dom)]
    drawn = sum('class="main-svg"' in dom[a:b] for a, b in itertools.pairwise(starts))
    return len(starts) - 1, drawn


@pytest.mark.parametrize("kind", ["study", "search"])
def test_every_figure_renders_without_errors(pages, kind, tmp_path):
    page = pages[kind]
    expected = int(re.search(r"data-figures='(\d+)'", page.read_text()).group(1))
    assert expected >= 8
    result = chromium(tmp_path, "--virtual-time-budget=15000", "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert rendered_plots(result.stdout) == (expected, expected)
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], "JavaScript errors or console output:\n" + "\n".join(console)

    shot = tmp_path / f"dashboard-{kind}.png"
    result = chromium(tmp_path, "--virtual-time-budget=15000", f"--screenshot={shot}", "--window-size=1400,3000",
                      "--hide-scrollbars", page.as_uri())
    assert result.returncode == 0 and shot.stat().st_size > 50_000, result.stderr[-2000:]
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)


def test_rendered_plot_count_sees_an_unrendered_div():
    dom = ('<div id="a" class="plotly-graph-div js-plotly-plot"><svg class="main-svg"></svg></div>'
           '<div id="b" class="plotly-graph-div js-plotly-plot"></div>')
    assert rendered_plots(dom) == (2, 1)
