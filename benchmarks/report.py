"""How long the dashboard of a 1,000-trial study takes to build (goal: under 10 s).

    .venv/bin/python benchmarks/report.py [--store DIR] [--trials-per-setting 25]

The store (an MLflow sqlite database in the platform's layout, written with log_batch by
dashboards.sample_store: 40 settings x 25 seeds = 1,000 trial runs, each with a pre-train and two
fine-tune runs, 4,001 runs in all) is generated once into DIR (default: a folder under the temp
directory) and reused; only the report build is timed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from dashboards import load
from dashboards.report import build_report
from dashboards.sample_store import write_sample_study

FACTORS = {
    "model.mim.mask_ratio": [0.25, 0.4, 0.5, 0.6, 0.75],
    "model.mlm.mask_ratio": [0.1, 0.15, 0.3, 0.45],
    "model.mim.decoder": ["transformer", "mlp"],
}
NAME = "bench_report"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "ablate-bench-report")
    parser.add_argument("--trials-per-setting", type=int, default=25, help="seeds per setting (40 settings)")
    args = parser.parse_args()
    store = args.store.absolute()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    done = store / f"done-{args.trials_per_setting}"
    if not done.exists():
        store.mkdir(parents=True, exist_ok=True)
        (store / "mlflow.db").unlink(missing_ok=True)
        start = time.perf_counter()
        write_sample_study(uri, NAME, FACTORS, seeds=range(args.trials_per_setting), failed=5, pruned=5)
        done.touch()
        print(f"generated the store in {time.perf_counter() - start:.1f} s: {store}")
    load.load_study(NAME, uri)  # warm-up: imports and the database's first open are not the report's cost
    start, cpu = time.perf_counter(), time.process_time()
    data = load.load_study(NAME, uri)
    loaded, loaded_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    out = build_report(NAME, uri, store / "report.html")
    total, total_cpu = time.perf_counter() - start, time.process_time() - cpu
    size = out.stat().st_size / 1e6
    print(f"{len(data.trials)} trial runs (each with a pre-train and two fine-tune runs)")
    print(f"load from MLflow: {loaded:.2f} s wall, {loaded_cpu:.2f} s CPU")
    print(f"report build (load + summaries + figures + HTML): {total:.2f} s wall, {total_cpu:.2f} s CPU  "
          f"[goal < 10 s]  {out} ({size:.1f} MB)")
    print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall time grows with it)")


if __name__ == "__main__":
    main()
