"""Data-parallel trials: a DDP step over shards is the single-process step over the global batch,
and a study trial with `resources: {workers: 2}` trains on 2 gloo workers (Ray Train inside the
Tune trial) with everything logged once, in the trial's MLflow runs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import yaml

from ablations import tracking
from ablations.cli import main
from ablations.distributed import trial_request, trials_that_fit
from m3ae.config import ConfigError, apply_overrides, profile
from m3ae.config import check_shardable
from m3ae.train.distributed import SINGLE, DataParallel


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    """`ablate run --storage` of the study below: its data cache (<storage>/cache/data) is also
    the one the step test builds, so the smoke data is generated once."""
    return tmp_path_factory.mktemp("ddp-storage")


# --------------------------------------------------------------------------- one step, two ways


def _classification_step(parallel: DataParallel, cache_dir: Path) -> dict:
    """One fine-tuning step (synth_cls, no dropout: nothing random) on this process's share of a
    global batch of 16; returns the loss, the gradients and the weights after the AdamW step."""
    from m3ae.data import build_dataset, build_tokenizer, make_loader, text_vocab
    from m3ae.model import build_model
    from m3ae.train import get_task
    from m3ae.train.finetune import TaskModel, _train_step
    from m3ae.train.optim import build_optimizer
    from m3ae.train.runtime import seed_everything
    from m3ae.train.schedule import build_scheduler

    cfg = apply_overrides(profile("smoke"), {"threads": 1, "model.text.dropout": 0.0, "model.fusion.dropout": 0.0})
    seed_everything(cfg.seed, cfg.threads)
    tokenizer = build_tokenizer(cfg, cache_dir)
    train = build_dataset("synth_cls", "train", cfg, tokenizer, cache_dir)
    spec, model = get_task("synth_cls"), build_model(cfg.model, text_vocab(tokenizer))
    net = TaskModel(model, spec.build_head(model, train))
    optimizer = build_optimizer(net.roles(), cfg.finetune, net.parameters())
    scheduler = build_scheduler(optimizer, cfg.finetune, 10)
    loss_of = parallel.wrap(net, lambda batch: spec.loss(net.backbone, net.head, batch))
    batch = next(iter(make_loader(train, cfg.finetune.batch_size, train=True, cfg=cfg, seed=0)))
    loss = _train_step(spec, loss_of, optimizer, scheduler, parallel.shard(batch), cfg.finetune, 1)
    return {"loss": loss, "shard": parallel.first_shard,
            "grads": {n: None if p.grad is None else p.grad.clone() for n, p in net.named_parameters()},
            "weights": {n: p.detach().clone() for n, p in net.named_parameters()}}


def _ddp_worker(rank: int, world: int, rendezvous: str, cache_dir: str, out_dir: str) -> None:
    """A spawned process of a 2-process gloo group (torchrun's role, without Ray)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        result = _classification_step(DataParallel.from_process_group(), Path(cache_dir))
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_a_two_worker_ddp_step_equals_one_process_step_on_the_global_batch(tmp_path, storage):
    cache_dir = storage / "cache" / "data"
    single = _classification_step(SINGLE, cache_dir)  # also builds the data the workers read
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous"), str(cache_dir), str(tmp_path)),
                                nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    assert ranks[0]["shard"] != ranks[1]["shard"]  # two halves of the batch, not the same one twice
    # the global batch's mean loss is the mean of the two halves' mean losses
    assert math.isclose((ranks[0]["loss"] + ranks[1]["loss"]) / 2, single["loss"], rel_tol=1e-5)
    unused = {n for n, g in single["grads"].items() if g is None}  # pre-training heads a task leaves alone
    assert unused and all(n.startswith("backbone.") for n in unused)
    for rank in ranks:
        assert {n for n, g in rank["grads"].items() if g is None} == unused  # DDP leaves them None too
        for name, grad in single["grads"].items():
            if grad is not None:
                torch.testing.assert_close(rank["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
        for name, weight in single["weights"].items():  # after clipping and AdamW: the same step
            if single["grads"][name] is None:
                assert torch.equal(rank["weights"][name], weight), name
                continue
            # Adam's first step is about lr * sign(gradient): where the gradient is float noise
            # (attention key biases: softmax ignores a shift) the sign is noise too, so those
            # weights agree to the step size only; everywhere else they agree to float precision
            known = single["grads"][name].abs() > 1e-6
            torch.testing.assert_close(rank["weights"][name][known], weight[known], rtol=1e-4, atol=1e-6, msg=name)
            assert (rank["weights"][name] - weight).abs().max() < 1e-4, name
    for name, weight in ranks[0]["weights"].items():  # the workers hold one model
        assert torch.equal(weight, ranks[1]["weights"][name]), name


def test_shards_must_be_equal_and_the_trial_only_drives_its_workers():
    cfg = profile("smoke")  # batch sizes 16
    check_shardable(cfg, 4)
    with pytest.raises(ConfigError, match=r"pretrain.batch_size: 16 does not split into 3 equal shards"):
        check_shardable(cfg, 3)
    with pytest.raises(ConfigError, match=r"pretrain.batch_size: 16 does not split into 16 equal shards of at least 2"):
        check_shardable(cfg, 16)  # ITM needs a negative in every shard
    with pytest.raises(ConfigError, match=r"--workers: must be at least 1"):
        check_shardable(cfg, 0, "--workers")
    assert trial_request({"cpu": 2, "gpu": 1, "workers": 1}) == {"cpu": 2.0, "gpu": 1.0}
    assert trial_request({"cpu": 2, "gpu": 1, "workers": 4})["cpu"] == 0  # the workers reserve the CPUs
    assert trials_that_fit({"cpu": 1, "gpu": 0, "workers": 2}, {"CPU": 8}) == 4
    assert trials_that_fit({"cpu": 2, "gpu": 1, "workers": 4}, {"CPU": 64, "GPU": 8}) == 2
    assert trials_that_fit({"cpu": 1, "gpu": 0, "workers": 2}, {"CPU": 1}) == 1


def test_train_refuses_workers_that_do_not_split_the_batch(tmp_path, capsys):
    assert main(["train", "--profile", "smoke", "--workers", "3", "--workdir", str(tmp_path)]) == 2
    assert "does not split into 3 equal shards" in capsys.readouterr().err
    assert not (tmp_path / "train").exists()


# --------------------------------------------------------------------------- a study trial on 2 workers


def test_a_trial_with_two_workers_trains_data_parallel_and_logs_once(tmp_path, storage, ray_session, capsys):
    from m3ae.data import build_tokenizer, text_vocab
    from m3ae.model import build_model
    from m3ae.train.checkpoint import load_checkpoint, load_model_weights

    study = tmp_path / "ddp.yaml"
    study.write_text(yaml.safe_dump({
        "name": "ddp", "profile": "smoke", "seeds": [0], "data": {"pretrain": "synth_pairs"}, "tasks": ["synth_vqa"],
        "metric": {"name": "synth_vqa/overall_acc", "mode": "max"}, "resources": {"cpu": 1, "workers": 2}}))
    workdir = tmp_path / "runs"
    assert main(["run", str(study), "--workdir", str(workdir), "--storage", str(storage)]) == 0, capsys.readouterr()
    assert "1/1 done" in capsys.readouterr().out

    tracker = tracking.Tracker(tracking.default_tracking_uri(workdir))
    runs: dict[str, list] = {}
    for run in tracker.runs(tracker.client.get_experiment_by_name("ddp").experiment_id):
        runs.setdefault(run.data.tags.get(tracking.KIND), []).append(run)
    (trial,), (pre,), (fine,) = runs["trial"], runs["pretrain"], runs["finetune"]
    assert all(r.info.status == "FINISHED" for r in (trial, pre, fine))
    assert trial.data.tags["ablate.workers"] == "2" and trial.data.tags[tracking.PRETRAIN_KEY].endswith("-w2")
    assert "synth_vqa/overall_acc" in trial.data.metrics and trial.data.metrics["cost/flops"] > 0

    # both workers trained, each on its own half of every batch (16 per step: 8 each)
    for run, _stage_dir in ((pre, None), (fine, "synth_vqa")):
        local = tracker.client.download_artifacts(run.info.run_id, "workers.json", str(tmp_path / run.info.run_id))
        workers = json.loads(Path(local).read_text())
        assert [w["rank"] for w in workers] == [0, 1] and {w["world_size"] for w in workers} == {2}
        assert workers[0]["pid"] != workers[1]["pid"] and os.getpid() not in {w["pid"] for w in workers}
        assert workers[0]["first_shard"] != workers[1]["first_shard"]
        assert workers[0]["samples"] == workers[1]["samples"] > 0
    assert workers[0]["samples"] % 8 == 0

    # every step and evaluation logged once, by rank 0, with the loss averaged over the workers
    losses = tracker.client.get_metric_history(pre.info.run_id, "pretrain/loss")
    assert sorted(m.step for m in losses) == list(range(1, 11))  # smoke: 10 steps
    assert all(math.isfinite(m.value) for m in losses)
    assert len(tracker.client.get_metric_history(pre.info.run_id, "pretrain/val_loss")) == 1
    steps = tracker.client.get_metric_history(fine.info.run_id, "synth_vqa/train_loss")
    assert sorted(m.step for m in steps) == list(range(1, len(steps) + 1))
    assert len(tracker.client.get_metric_history(fine.info.run_id, "synth_vqa/val_overall_acc")) == 1  # 1 epoch

    # the checkpoint of the data-parallel pre-training loads into a plain single-process model
    checkpoint = next((storage / "cache" / "pretrain").glob("*-w2/checkpoint.pt"))
    state = load_checkpoint(checkpoint)
    assert not any(k.startswith("module.") for k in state["model"])
    cfg = apply_overrides(profile("smoke"), {"finetune.tasks": ["synth_vqa"], "threads": 1})
    model = build_model(cfg.model, text_vocab(build_tokenizer(cfg, storage / "cache" / "data")))
    load_model_weights(model, state, cfg)  # strict: every name and shape matches
    assert state["step"] == 10
