"""Write a study into a real MLflow store in the platform's layout (docs/architecture.md, "The MLflow contract"),
with numbers from a known formula. The dashboard tests and benchmarks/report.py build reports from it;
`python -m dashboards.sample_store URI NAME` makes one to look at.

Layout written: a study run (`spec.yaml` artifact); per trial a trial run (child of the study run) with
factor/seed/trial tags, the flattened config as params and final `<task>/<metric>` + `cost/*` metrics;
a pre-train run (child of the first trial with that pre-train key; later trials link it with
`ablate.pretrain_run_id`) with `pretrain/*` step curves and `reconstructions/step_<N>.png`; a fine-tune
run per task with `<task>/train_loss` and `<task>/val_<metric>` curves.
"""

from __future__ import annotations

import io
import itertools
import math
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from ablate_common.store import open_client

DEFAULT_FACTORS = {"model.mim.mask_ratio": [0.25, 0.5, 0.75], "model.mlm.mask_ratio": [0.15, 0.3]}
TASK_METRICS = {"synth_vqa": ["overall_acc", "open_acc", "closed_acc"], "synth_cls": ["acc"]}


def true_accuracy(setting: Mapping[str, object]) -> float:
    """The known formula behind the sample numbers (a fraction; stores hold it in percent, as m3ae logs
    accuracies): best at image ratio 0.75, text 0.15, transformer decoder."""
    acc = 0.70
    acc -= 0.4 * abs(float(setting.get("model.mim.mask_ratio", 0.75)) - 0.75)
    acc -= 0.3 * abs(float(setting.get("model.mlm.mask_ratio", 0.15)) - 0.15)
    acc -= 0.03 * (setting.get("model.mim.decoder", "transformer") != "transformer")
    return acc


def reconstruction_png(seed: int, mask_ratio: float, size: int = 24) -> bytes:
    """A small original / masked / reconstructed strip (random blobs), as PNG bytes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    original = np.zeros((size, size, 3))
    for _ in range(3):
        cy, cx, r = rng.uniform(4, size - 4, 2).tolist() + [rng.uniform(2, 6)]
        original += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None] * rng.uniform(0.3, 1, 3)
    original = np.clip(original, 0, 1)
    patches = rng.random((size // 4, size // 4)) < mask_ratio
    mask = np.kron(patches, np.ones((4, 4)))[..., None].astype(bool)
    masked = np.where(mask, 0.5, original)
    reconstructed = np.where(mask, np.clip(original + rng.normal(0, 0.1, original.shape), 0, 1), original)
    strip = np.concatenate([original, masked, reconstructed], axis=1)
    buffer = io.BytesIO()
    Image.fromarray((strip * 255).astype(np.uint8)).resize((strip.shape[1] * 4, size * 4), Image.NEAREST).save(
        buffer, format="PNG")
    return buffer.getvalue()


def sample_spec(name: str, factors: Mapping[str, Sequence[object]], seeds: Sequence[int]) -> dict:
    """A study file like studies/*.yaml, with a reference block ranking the settings by the formula."""
    settings = [dict(zip(factors, combo)) for combo in itertools.product(*factors.values())]
    ranked = sorted(settings, key=true_accuracy, reverse=True)
    return {
        "name": name,
        "factors": {k: list(v) for k, v in factors.items()},
        "seeds": list(seeds),
        "metric": {"name": "synth_vqa/overall_acc", "mode": "max"},
        "reference": {
            "source": "sample (a known formula, not the paper)",
            "note": "ranking from the formula",
            "metric": "vqa_rad/overall_acc",
            "ranking": ranked[: min(4, len(ranked))],
            "values": [{"setting": s, "value": round(100 * (true_accuracy(s) + 0.07), 2)} for s in ranked],
        },
    }


class _Writer:
    """Creates the runs through MlflowClient, batching metrics with log_batch."""

    def __init__(self, client: MlflowClient, experiment_id: str):
        self.client, self.experiment_id = client, experiment_id
        self.clock = int(time.time() * 1000)

    def run(self, tags: dict[str, str], params: dict[str, object] | None = None,
            metrics: Sequence[tuple[str, float, int]] = (), status: str = "FINISHED") -> str:
        self.clock += 1000
        run = self.client.create_run(self.experiment_id, start_time=self.clock, tags=tags)
        run_id = run.info.run_id
        ms = [Metric(k, float(v), self.clock, step) for k, v, step in metrics]
        ps = [Param(k, str(v)) for k, v in (params or {}).items()]
        for i in range(0, len(ms), 1000):  # log_batch takes at most 1000 metrics and 100 params a call
            self.client.log_batch(run_id, metrics=ms[i:i + 1000])
        for i in range(0, len(ps), 100):
            self.client.log_batch(run_id, params=ps[i:i + 100])
        if status != "RUNNING":
            self.client.set_terminated(run_id, status=status, end_time=self.clock + 500)
        return run_id


def write_sample_study(
    tracking_uri: str,
    name: str,
    factors: Mapping[str, Sequence[object]] = DEFAULT_FACTORS,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    curve_steps: int = 10,
    images: bool = True,
    failed: int = 1,
    pruned: int = 0,
    noise: float = 0.01,
    log_spec: bool = True,
    artifact_location: str | None = None,
) -> dict:
    """Write study `name` into the store; returns its spec. The last `failed` trials fail with an
    error message, the `pruned` before them are marked pruned (both have no final metrics).
    Factors starting with `finetune.` do not change the pre-train key, so those trials share a pre-train.
    Artifacts go to `artifact_location`, by default an `artifacts` folder beside a sqlite database
    (MLflow's own default is ./mlruns in the current directory)."""
    spec = sample_spec(name, factors, seeds)
    writer, study_run = _open_study(tracking_uri, name, spec if log_spec else None, artifact_location)
    trials = [(dict(zip(factors, combo)), seed) for combo in itertools.product(*factors.values()) for seed in seeds]
    pretrain_runs: dict[tuple, str] = {}
    for index, (setting, seed) in enumerate(trials):
        rng = np.random.default_rng([index, seed])
        status = "FAILED" if index >= len(trials) - failed else "FINISHED"
        is_pruned = status != "FAILED" and index >= len(trials) - failed - pruned
        key = (tuple((k, str(v)) for k, v in setting.items() if not k.startswith("finetune.")), seed)
        tags = _trial_tags(name, study_run, index, setting, seed, key, status, is_pruned, pretrain_runs.get(key))
        acc, metrics = None, []
        if status == "FINISHED" and not is_pruned:
            acc = 100 * (true_accuracy(setting) + rng.normal(0, noise))  # percent, as m3ae logs it
            metrics = _final_metrics(setting, acc, rng)
        params = {"profile": "sample", **setting, "pretrain.steps": curve_steps, "seed": seed}
        trial_run = writer.run(tags, params, metrics, status=status)
        if key not in pretrain_runs and status != "FAILED":
            pretrain_runs[key] = _pretrain_run(writer, trial_run, name, setting, seed, curve_steps, images)
            writer.client.set_tag(trial_run, "ablate.pretrain_run_id", pretrain_runs[key])  # as the platform does
        if acc is not None:
            for task in TASK_METRICS:
                _finetune_run(writer, trial_run, name, task, acc, curve_steps, rng)
    writer.client.set_terminated(study_run, status="FINISHED")
    return spec


def _open_study(tracking_uri: str, name: str, spec: dict | None, artifact_location: str | None) -> tuple[_Writer, str]:
    """The experiment and its (still RUNNING) study run, with `spec` as spec.yaml when given."""
    client = open_client(tracking_uri)
    if artifact_location is None and tracking_uri.startswith("sqlite:///"):
        artifact_location = (Path(tracking_uri[len("sqlite:///"):]).parent / "artifacts").as_uri()
    experiment_id = client.create_experiment(name, artifact_location=artifact_location)
    writer = _Writer(client, experiment_id)
    study_run = writer.run({"ablate.kind": "study", "ablate.study": name, "mlflow.runName": "study"}, status="RUNNING")
    if spec is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "spec.yaml"
            path.write_text(yaml.safe_dump(spec, sort_keys=False))
            client.log_artifact(study_run, str(path))
    return writer, study_run


def _trial_tags(name: str, study_run: str, index: int, setting: dict, seed: int, key: tuple, status: str,
                is_pruned: bool, pretrain_run: str | None) -> dict[str, str]:
    """A trial run's tags as the platform writes them; `pretrain_run`: the run it shares a pre-training with."""
    trial_id = f"t{index:05d}"
    tags = {"ablate.kind": "trial", "ablate.study": name, "ablate.trial_id": trial_id,
            "ablate.seed": str(seed), "mlflow.parentRunId": study_run, "mlflow.runName": trial_id,
            **{f"ablate.factor.{k}": str(v) for k, v in setting.items()}}
    tags["ablate.pretrain_key"] = f"pk{abs(hash(key)) % 10**8:08d}"
    if status == "FAILED":
        tags["ablate.error"] = f"NonFiniteLossError: loss is nan at pretrain step {3 + index % 5}"
    if is_pruned:
        tags["ablate.pruned"] = "true"
    if pretrain_run is not None:
        tags["ablate.pretrain_run_id"] = pretrain_run
    return tags


def _final_metrics(setting: dict, acc: float, rng: np.random.Generator) -> list[tuple[str, float, int]]:
    """Every task's metrics around `acc` and the costs, a cheaper pre-training at a higher mask ratio."""
    metrics = []
    for task, names in TASK_METRICS.items():
        metrics += [(f"{task}/{m}", acc + i, 0) for i, m in enumerate(names)]
    ratio = float(setting.get("model.mim.mask_ratio", 0.75))
    metrics += [("cost/pretrain_seconds", 30 * (1.2 - ratio) + rng.uniform(0, 2), 0),
                ("cost/finetune_seconds", 10 + rng.uniform(0, 1), 0),
                ("cost/flops", 1e12 * (1.2 - ratio), 0)]
    return metrics


def _pretrain_run(writer: _Writer, trial_run: str, study: str, setting: dict, seed: int, steps: int,
                  images: bool) -> str:
    ratio = float(setting.get("model.mim.mask_ratio", 0.75))
    curves = []
    for step in range(1, steps + 1):
        decay = math.exp(-step / max(steps / 3, 1))
        curves += [("pretrain/mim_loss", 0.2 + ratio * decay, step), ("pretrain/mlm_loss", 2 + 4 * decay, step),
                   ("pretrain/itm_loss", 0.3 + 0.4 * decay, step), ("pretrain/itm_acc", 1 - 0.5 * decay, step),
                   ("pretrain/mlm_acc", 0.6 - 0.5 * decay, step)]
    run_id = writer.run({"ablate.kind": "pretrain", "ablate.study": study, "mlflow.parentRunId": trial_run,
                         "mlflow.runName": "pretrain"}, {"model.mim.mask_ratio": ratio}, curves)
    if images:
        with tempfile.TemporaryDirectory() as tmp:
            for step in (steps // 2, steps):
                path = Path(tmp) / f"step_{step}.png"
                path.write_bytes(reconstruction_png(seed * 1000 + step, ratio))
                writer.client.log_artifact(run_id, str(path), "reconstructions")
    return run_id


def _finetune_run(writer: _Writer, trial_run: str, study: str, task: str, acc: float, steps: int,
                  rng: np.random.Generator) -> str:
    metric = TASK_METRICS[task][0]
    curves = []
    for step in range(1, steps + 1):
        curves += [(f"{task}/train_loss", 1.5 * math.exp(-step / 4) + rng.uniform(0, 0.05), step),
                   (f"{task}/val_{metric}", acc * (1 - math.exp(-step / 3)), step)]
    curves.append((f"{task}/{metric}", acc, 0))
    return writer.run({"ablate.kind": "finetune", "ablate.study": study, "mlflow.parentRunId": trial_run,
                       "mlflow.runName": f"finetune {task}"}, {"task": task}, curves)


if __name__ == "__main__":
    uri, study_name = sys.argv[1], sys.argv[2]
    write_sample_study(uri, study_name)
    print(f"wrote study {study_name} to {uri}")
