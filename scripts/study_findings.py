"""A finished study's numbers as markdown, and its dashboard's headline figure as a PNG.

    .venv/bin/python scripts/study_findings.py masking_strategy --workdir /tmp/demo-runs
    .venv/bin/python scripts/study_findings.py masking_strategy --workdir /tmp/demo-runs --png docs/images/masking_strategy.png

Prints, for the headline metric, each factor's levels (mean over the other
factors and seeds, 95% t-interval, n), each full setting, and a paired test of
every factor's levels (pairs share the other factors and the seed). `--png`
screenshots the top of the study's dashboard (<workdir>/reports/<name>.html,
built by `ablate run` / `ablate report`) with headless Chromium; the README's
results section shows these pictures.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from dashboards.load import load_study
from dashboards.summaries import compare, short_name, summarize

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=8000")


def markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(rows)


def level_table(trials: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    summary = summarize(trials, by, metric)
    table = summary[by].copy().rename(columns={f: short_name(f) for f in by})
    table[metric] = [f"{m:.1f} ± {(hi - lo) / 2:.1f}" for m, lo, hi in zip(summary["mean"], summary["ci_low"],
                                                                            summary["ci_high"])]
    table["n"] = summary["n"].astype(int)
    return table


def findings(name: str, uri: str) -> str:
    study = load_study(name, uri)
    metric, trials = study.headline, study.trials
    if metric is None or trials.empty:
        raise SystemExit(f"study {name!r} in {uri} has no finished trials with a headline metric")
    finished = trials[trials[metric].notna()]
    out = [f"### {name}: {metric} ({len(finished)} finished trials of {len(trials)}, seeds "
           f"{sorted(finished['seed'].unique().tolist())})", ""]
    for factor in study.factors:
        out += [f"**by {short_name(factor)}** (mean ± 95% CI half-width over the other factors and seeds)", "",
                markdown(level_table(finished, [factor], metric)), ""]
        others = [f for f in study.factors if f != factor] + ["seed"]
        levels = finished[factor].dropna().unique().tolist()
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels)
        levels = sorted(levels, key=float if numeric else str)
        for a, b in zip(levels, levels[1:]):
            hi, lo = finished[finished[factor] == b], finished[finished[factor] == a]
            test, p, n = compare(hi, lo, metric, others)
            diff = (hi.set_index(others)[metric] - lo.set_index(others)[metric]).dropna()
            out.append(f"- {short_name(factor)} {b} minus {a}: {diff.mean():+.1f} points "
                       f"({test}, p = {p:.2f}, {n} pairs)")
        out.append("")
    if len(study.factors) > 1:
        out += ["**every setting**", "", markdown(level_table(finished, study.factors, metric)), ""]
    cost = "cost/pretrain_seconds"
    if cost in finished:
        out.append(f"pre-training seconds per trial (0 = shared from the cache): "
                   f"median {finished[cost].median():.0f}, max {finished[cost].max():.0f}")
    return "\n".join(out)


def screenshot(report: Path, png: Path, width: int = 1400, height: int = 1000) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("--png needs Chromium on PATH (Debian: apt-get install chromium)")
    if not report.is_file():
        raise SystemExit(f"{report}: no dashboard; build it with `ablate report NAME --workdir ...`")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png.absolute()}", report.absolute().as_uri()],
                       check=True, capture_output=True, timeout=120)
    print(f"wrote {png}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", help="the study's name")
    parser.add_argument("--workdir", default="ablate-runs", help="the work directory `ablate run` used")
    parser.add_argument("--tracking-uri", help="MLflow store (default sqlite:///<workdir>/mlflow.db)")
    parser.add_argument("--png", type=Path, help="also screenshot the dashboard's top to this PNG")
    parser.add_argument("--height", type=int, default=1000, help="screenshot height in pixels")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir).absolute()
    print(findings(args.study, args.tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"))
    if args.png:
        screenshot(workdir / "reports" / f"{args.study}.html", args.png, height=args.height)


if __name__ == "__main__":
    main()
