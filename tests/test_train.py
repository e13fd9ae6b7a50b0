"""The training engine end to end on the smoke profile: pre-training, resume,
fine-tuning of each task kind, callbacks, checkpoints, errors."""

from __future__ import annotations

import pytest
import torch

from m3ae.config import apply_overrides, profile
from m3ae.train import (Callback, CheckpointMismatchError, NonFiniteLossError, finetune, get_task, pretrain)
from m3ae.train.checkpoint import load_checkpoint, load_model_weights


class Recorder(Callback):
    """Keeps every hook call, in order."""

    def __init__(self):
        self.events = []

    def on_stage_start(self, stage, total_steps=None):
        self.events.append(("start", stage))

    def on_step(self, stage, step, metrics):
        self.events.append(("step", stage, step, dict(metrics)))

    def on_eval(self, stage, step, metrics):
        self.events.append(("eval", stage, step, dict(metrics)))

    def on_artifact(self, stage, path):
        self.events.append(("artifact", stage, path))

    def on_end(self, stage, metrics):
        self.events.append(("end", stage, dict(metrics)))

    def kinds(self):
        return [(e[0], e[2]) if e[0] in ("step", "eval") else (e[0],) for e in self.events]

    def losses(self):
        return [e[3]["loss"] for e in self.events if e[0] == "step"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # data and tokenizer: the same folder `ablate train --workdir <base>/ablate-train` uses (test_train_cli.py)
    path = tmp_path_factory.getbasetemp() / "ablate-train" / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def smoke(**overrides):
    return apply_overrides(profile("smoke"), {"threads": 1, **overrides})


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, cache_dir):
    """One smoke pre-training with an evaluation half-way, recorded."""
    cfg = smoke(**{"pretrain.steps": 6, "pretrain.eval_every": 3})
    recorder = Recorder()
    result = pretrain(cfg, tmp_path_factory.mktemp("pretrain"), cache_dir, [recorder])
    return cfg, result, recorder


def test_pretrain_reports_steps_evals_pictures_and_end_in_order(pretrained):
    cfg, result, rec = pretrained
    assert rec.kinds() == [("start",), ("step", 1), ("step", 2), ("step", 3), ("eval", 3), ("artifact",),
                           ("step", 4), ("step", 5), ("step", 6), ("eval", 6), ("artifact",), ("end",)]
    step = rec.events[1][3]
    assert {"loss", "mim_loss", "mlm_loss", "itm_loss", "mlm_acc", "itm_acc", "lr", "samples_per_s"} <= set(step)
    evaluation = rec.events[4][3]
    assert {"val_loss", "val_mim_loss", "val_mlm_loss", "val_itm_loss", "val_itm_acc"} <= set(evaluation)
    pictures = [e[2] for e in rec.events if e[0] == "artifact"]
    assert [p.name for p in pictures] == ["step_3.png", "step_6.png"]
    assert all(p.stat().st_size > 0 and p.read_bytes()[:4] == b"\x89PNG" for p in pictures)
    assert rec.events[-1][2] == result.metrics == rec.events[-3][3]
    assert result.flops > 0 and result.seconds > 0
    state = load_checkpoint(result.checkpoint)
    assert state["step"] == 6 and state["config"]["pretrain"]["steps"] == 6
    assert {"model", "optimizer", "scheduler", "rng"} <= set(state)


def test_pretrain_same_seed_repeats_exactly_in_a_fresh_work_directory(pretrained, tmp_path):
    # a new cache generates synthmed and trains the tokenizer again: both must come out the same
    cfg, _, first = pretrained
    again = Recorder()
    pretrain(cfg, tmp_path / "run", tmp_path / "fresh-cache", [again])
    assert again.losses() == first.losses()


def test_resume_continues_exactly(tmp_path, cache_dir):
    # batch 64 -> a few steps per epoch, so the pause and the resume cross epochs
    cfg = smoke(**{"pretrain.steps": 6, "pretrain.batch_size": 64, "pretrain.eval_every": 0})
    straight = Recorder()
    pretrain(cfg, tmp_path / "straight", cache_dir, [straight])
    first, second = Recorder(), Recorder()
    pretrain(cfg, tmp_path / "paused", cache_dir, [first], max_steps=4)
    assert load_checkpoint(tmp_path / "paused" / "checkpoint.pt")["step"] == 4
    pretrain(cfg, tmp_path / "paused", cache_dir, [second])
    assert [e[2] for e in second.events if e[0] == "step"] == [5, 6]
    assert first.losses() + second.losses() == straight.losses()
    with pytest.raises(CheckpointMismatchError, match=r"pretrain\.lr: checkpoint 0\.001, config 0\.002"):
        pretrain(apply_overrides(cfg, {"pretrain.lr": 2e-3}), tmp_path / "paused", cache_dir)
    # fine-tuning data sizes are not pre-training settings: the finished run is taken as it is
    done = pretrain(apply_overrides(cfg, {"data.synth_vqa_images": 30}), tmp_path / "paused", cache_dir)
    assert done.checkpoint == tmp_path / "paused" / "checkpoint.pt"
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "paused" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("task", ["synth_vqa", "synth_cls", "synth_irtr"])
def test_finetune_each_task_kind(task, pretrained, tmp_path, cache_dir):
    cfg, result, _ = pretrained
    cfg = apply_overrides(cfg, {"finetune.epochs": 2})
    rec = Recorder()
    out = finetune(cfg, task, result.checkpoint, tmp_path, cache_dir, [rec])
    spec = get_task(task)
    assert list(out.metrics) == list(spec.metric_names)
    assert all(0.0 <= v <= 100.0 for v in out.metrics.values() if v == v)
    kinds = [k[0] for k in rec.kinds()]
    assert kinds[0] == "start" and kinds[-2:] == ["artifact", "end"] and kinds.count("eval") == 2
    evals = [e[3] for e in rec.events if e[0] == "eval"]
    assert set(evals[0]) == {f"val_{m}" for m in spec.metric_names}
    assert "train_loss" in rec.events[1][3]
    assert rec.events[-1][2] == out.metrics and (tmp_path / "metrics.json").is_file()
    assert out.flops > 0


def test_finetune_from_scratch_and_train_fraction(tmp_path, cache_dir):
    full, part = Recorder(), Recorder()
    finetune(smoke(), "synth_cls", None, tmp_path / "a", cache_dir, [full])
    finetune(smoke(**{"finetune.train_fraction": 0.5}), "synth_cls", None, tmp_path / "b", cache_dir, [part])
    steps = lambda rec: sum(1 for e in rec.events if e[0] == "step")  # noqa: E731
    assert 0 < steps(part) < steps(full)


def test_finetune_keep_model_returns_the_scored_model(tmp_path, cache_dir):
    from m3ae.data import build_dataset, build_tokenizer

    cfg = smoke()
    result = finetune(cfg, "synth_cls", None, tmp_path, cache_dir, keep_model=True)
    test_set = build_dataset("synth_cls", "test", cfg, build_tokenizer(cfg, cache_dir), cache_dir)
    result.model.eval()
    assert get_task("synth_cls").evaluate(result.model.backbone, result.model.head, test_set, cfg) == result.metrics
    assert finetune(cfg, "synth_cls", None, tmp_path / "again", cache_dir).model is None


def test_checkpoint_into_another_architecture_names_the_config_paths(pretrained, cache_dir):
    from m3ae.data import build_tokenizer, text_vocab
    from m3ae.model import build_model

    cfg, result, _ = pretrained
    state = load_checkpoint(result.checkpoint)
    vocab = text_vocab(build_tokenizer(cfg, cache_dir))
    # settings that don't change the weights load fine
    same = apply_overrides(cfg, {"model.mim.mask_ratio": 0.5})
    load_model_weights(build_model(same.model, vocab), state, same)
    other = apply_overrides(cfg, {"model.fusion.hidden_size": 48})
    with pytest.raises(CheckpointMismatchError, match=r"model\.fusion\.hidden_size: checkpoint 32, config 48"):
        load_model_weights(build_model(other.model, vocab), state, other)
    fixed = apply_overrides(cfg, {"model.vision.pos_embed": "sincos"})  # same shapes, other meaning
    with pytest.raises(CheckpointMismatchError,
                       match=r"model\.vision\.pos_embed: checkpoint 'learned', config 'sincos'"):
        load_model_weights(build_model(fixed.model, vocab), state, fixed)


def test_non_finite_loss_names_stage_and_step(tmp_path, cache_dir):
    cfg = smoke(**{"pretrain.lr": 1e25, "pretrain.warmup_frac": 0.0, "pretrain.grad_clip": 0.0,
                   "pretrain.steps": 5})
    with pytest.raises(NonFiniteLossError, match=r"pretrain: non-finite loss at step [2-5]") as info:
        pretrain(cfg, tmp_path, cache_dir)
    assert isinstance(info.value, FloatingPointError)


def test_batched_retrieval_scores_equal_pair_by_pair(pretrained, cache_dir):
    from m3ae.data import build_dataset, build_tokenizer, make_loader, text_vocab
    from m3ae.model import build_model
    from m3ae.train.retrieval import score_matrix

    cfg = pretrained[0]
    tokenizer = build_tokenizer(cfg, cache_dir)
    torch.manual_seed(0)
    model = build_model(cfg.model, text_vocab(tokenizer)).eval()
    test_set = build_dataset("synth_irtr", "test", cfg, tokenizer, cache_dir)
    batches = list(make_loader(test_set, 8, train=False, cfg=cfg, seed=0))[:2]
    scores, text_image = score_matrix(model, batches, chunk=7)
    texts = [(b.input_ids[j], b.attention_mask[j]) for b in batches for j in range(len(b))]
    images = {}
    for b in batches:
        ids = b.image_ids if b.image_ids is not None else torch.arange(len(b))
        for j, image_id in enumerate(ids.tolist()):
            images.setdefault(image_id, b.images[j])
    image_list = list(images.values())
    assert scores.shape == (len(image_list), len(texts)) and text_image.shape == (len(texts),)
    with torch.no_grad():
        for i in (0, len(image_list) - 1):
            for t in (0, len(texts) - 1):
                ids, mask = texts[t]
                logits = model.itm_head(model.encode(image_list[i][None], ids[None], mask[None]).pooled)
                assert scores[i, t].item() == pytest.approx((logits[0, 1] - logits[0, 0]).item(), abs=1e-4)


# --------------------------------------------------------------------------- compile switch


def test_compile_switch_falls_back_where_torch_cannot_compile(monkeypatch):
    import torch._dynamo

    from m3ae.train.runtime import maybe_compile

    module = torch.nn.Linear(4, 2)
    assert maybe_compile(module, False) is module
    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    with pytest.warns(UserWarning, match="not supported"):
        assert maybe_compile(module, True) is module


def test_a_graph_that_fails_to_compile_runs_eagerly():
    import torch._dynamo

    from m3ae.train.runtime import maybe_compile

    def broken_backend(graph, example_inputs):
        raise RuntimeError("no compiler here")

    torch._dynamo.reset()
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    x = torch.randn(3, 4)
    compiled = maybe_compile(module, True, backend=broken_backend)
    torch.testing.assert_close(compiled(x), module(x))
    torch._dynamo.reset()

