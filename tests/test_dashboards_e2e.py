"""The dashboard of a real smoke study: `ablate run` (real training, Ray, MLflow) builds it and
logs it on the study run; `ablate report STUDY.yaml` rebuilds it; Chromium renders every figure."""

import re
import shutil
import subprocess

import pytest
import yaml
from mlflow.tracking import MlflowClient

from ablations.cli import main as ablate

pytestmark = pytest.mark.slow

STUDY = {
    "name": "dash_e2e", "profile": "smoke", "factors": {"model.mim.mask_ratio": [0.5, 0.75]}, "seeds": [0, 1],
    "data": {"pretrain": "synth_pairs"}, "tasks": ["synth_vqa"],
    "metric": {"name": "synth_vqa/overall_acc", "mode": "max"}, "resources": {"cpu": 1},
    "reference": {"source": "M3AE paper", "metric": "vqa_rad/overall_acc",
                  "ranking": [{"model.mim.mask_ratio": 0.75}, {"model.mim.mask_ratio": 0.5}]},
}


def test_smoke_study_dashboard(tmp_path, ray_session, capsys):
    study = tmp_path / "dash_e2e.yaml"
    study.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    workdir = tmp_path / "runs"
    assert ablate(["run", str(study), "--workdir", str(workdir)]) == 0
    built = workdir / "reports" / "dash_e2e.html"
    assert built.exists()
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dash_e2e")
    (study_run,) = client.search_runs([experiment.experiment_id], "tags.`ablate.kind` = 'study'")
    assert "dashboard.html" in {a.path for a in client.list_artifacts(study_run.info.run_id)}

    capsys.readouterr()
    out = tmp_path / "again.html"
    assert ablate(["report", str(study), "--workdir", str(workdir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    page = out.read_text()
    expected = int(re.search(r"data-figures='(\d+)'", page).group(1))
    assert expected == page.count('class="plotly-graph-div"') >= 6  # factor, paper, pre-train, fine-tune, cost, states
    assert "mim.mask_ratio=0.75" in page and "<th>paper&#x27;s finding</th>" in page
    assert "<td>not judged (smoke profile)</td>" in page and "Smoke profile:" in page  # no verdict on smoke
    assert page.count("<img alt=") == 2  # a reconstruction grid per mask ratio
    assert '"text":"pretrain\\u002fmim_loss"' in page

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed: run `bash .ci/system-deps.sh` as root (the page was checked)")
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                             "--virtual-time-budget=15000", "--dump-dom", out.as_uri()],
                            capture_output=True, text=True, timeout=180, check=False)
    plots = re.split(r'<div[^>]*class="[^"]*\bjs-plotly-plot\b', result.stdout)[1:]
    assert len(plots) == expected and all('class="main-svg"' in p for p in plots)
    assert not [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
