"""`ablate import-m3ae`: an official M3AE Lightning checkpoint, built here at a tiny width
with the official code's key names and shapes (m3ae/modules/m3ae_module.py and its
modules), converted through the explicit key map and loaded through `model.init`."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer, _convert_openai_clip
from transformers import RobertaConfig, RobertaModel

from ablations.cli import main
from fixtures.real_datasets import WRITERS
from m3ae.batch import TextVocab
from m3ae.config import ConfigError, apply_overrides, profile
from m3ae.data import build_dataset
from m3ae.model import build_model
from m3ae.tasks import get_task
from m3ae.train.checkpoint import CheckpointMismatchError, load_checkpoint
from m3ae.train.finetune import finetune

W, H, D, V, LAYERS, PATCH, GRID = 32, 32, 16, 120, 2, 16, 3  # vision, fusion, MIM decoder widths; vocab; ...
# what the shapes do not tell: heads (the official code: width // 64) and, in 2 fusion layers, MIM's layer
HEADS = ["model.vision.num_heads=2", "model.text.num_heads=2", "model.fusion.num_heads=2",
         "model.mim.decoder_heads=2", "model.mim.recon_layer=1"]


def _official_state(heads: bool = True, task_head: tuple[str, int] | None = None,
                    V: int = V) -> dict[str, torch.Tensor]:  # noqa: N803
    """A state_dict with the official key names and shapes, random values; `task_head`
    (name, classes) adds a fine-tuned classifier, e.g. ("vqa_head", 5)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.1  # noqa: E731
    s: dict[str, torch.Tensor] = {}
    v = "vision_encoder.visual."
    s[v + "conv1.weight"] = r(W, 3, PATCH, PATCH)
    s[v + "class_embedding"] = r(W)
    s[v + "positional_embedding"] = r(1 + GRID * GRID, W)
    for ln in ("ln_pre", "ln_post"):
        s[f"{v}{ln}.weight"], s[f"{v}{ln}.bias"] = 1 + r(W), r(W)
    for i in range(LAYERS):
        _clip_block(s, f"{v}transformer.resblocks.{i}.", W, r)
    # CLIP's text-tower leftovers the official CLIP class builds
    s["vision_encoder.token_embedding.weight"] = r(V, W)
    s["vision_encoder.positional_embedding"] = r(77, W)
    s["vision_encoder.ln_final.weight"], s["vision_encoder.ln_final.bias"] = r(W), r(W)
    roberta = RobertaModel(RobertaConfig(vocab_size=V, hidden_size=W, num_hidden_layers=LAYERS,
                                         num_attention_heads=2, intermediate_size=4 * W, pad_token_id=1,
                                         max_position_embeddings=514, type_vocab_size=1))
    s.update({f"language_encoder.{k}": t for k, t in roberta.state_dict().items()})
    s["language_encoder.embeddings.position_ids"] = torch.arange(514)[None]  # transformers 4.6 saved it
    s["multi_modal_vision_proj.weight"], s["multi_modal_vision_proj.bias"] = r(H, W), r(H)
    s["multi_modal_language_proj.weight"], s["multi_modal_language_proj.bias"] = r(H, W), r(H)
    s["modality_type_embeddings.weight"] = r(2, H)
    for stream in ("vision", "language"):
        for i in range(LAYERS):
            p = f"multi_modal_{stream}_layers.{i}."
            for att in ("attention", "crossattention"):
                for lin in ("query", "key", "value"):
                    s[f"{p}{att}.self.{lin}.weight"], s[f"{p}{att}.self.{lin}.bias"] = r(H, H), r(H)
                s[f"{p}{att}.output.dense.weight"], s[f"{p}{att}.output.dense.bias"] = r(H, H), r(H)
                s[f"{p}{att}.output.LayerNorm.weight"], s[f"{p}{att}.output.LayerNorm.bias"] = 1 + r(H), r(H)
            s[p + "intermediate.dense.weight"], s[p + "intermediate.dense.bias"] = r(4 * H, H), r(4 * H)
            s[p + "output.dense.weight"], s[p + "output.dense.bias"] = r(H, 4 * H), r(H)
            s[p + "output.LayerNorm.weight"], s[p + "output.LayerNorm.bias"] = 1 + r(H), r(H)
        s[f"multi_modal_{stream}_pooler.dense.weight"] = r(H, H)
        s[f"multi_modal_{stream}_pooler.dense.bias"] = r(H)
    if heads:
        s["itm_head.fc.weight"], s["itm_head.fc.bias"] = r(2, 2 * H), r(2)
        s["mlm_head.transform.dense.weight"], s["mlm_head.transform.dense.bias"] = r(H, H), r(H)
        s["mlm_head.transform.LayerNorm.weight"], s["mlm_head.transform.LayerNorm.bias"] = 1 + r(H), r(H)
        s["mlm_head.decoder.weight"], s["mlm_head.bias"] = r(V, H), r(V)
        s["mim_head.decoder_embed.weight"], s["mim_head.decoder_embed.bias"] = r(D, H), r(D)
        s["mim_head.mask_token"] = r(1, 1, D)
        s["mim_head.decoder_pos_embed"] = r(1, 1 + GRID * GRID, D)
        for i in range(2):  # Transformer(width, mim_decoder_num_layers + 1) builds num_layers blocks
            _clip_block(s, f"mim_head.decoder.resblocks.{i}.", D, r)
        s["mim_head.decoder_norm.weight"], s["mim_head.decoder_norm.bias"] = 1 + r(D), r(D)
        s["mim_head.decoder_pred.weight"], s["mim_head.decoder_pred.bias"] = r(PATCH * PATCH * 3, D), r(PATCH ** 2 * 3)
    if task_head:  # nn.Sequential(Linear, LayerNorm, GELU, Linear)
        name, classes = task_head
        s[f"{name}.0.weight"], s[f"{name}.0.bias"] = r(2 * H, 2 * H), r(2 * H)
        s[f"{name}.1.weight"], s[f"{name}.1.bias"] = 1 + r(2 * H), r(2 * H)
        s[f"{name}.3.weight"], s[f"{name}.3.bias"] = r(classes, 2 * H), r(classes)
    return s


def _clip_block(s, p, width, r):
    """OpenAI CLIP's ResidualAttentionBlock."""
    s[p + "attn.in_proj_weight"], s[p + "attn.in_proj_bias"] = r(3 * width, width), r(3 * width)
    s[p + "attn.out_proj.weight"], s[p + "attn.out_proj.bias"] = r(width, width), r(width)
    s[p + "ln_1.weight"], s[p + "ln_1.bias"] = 1 + r(width), r(width)
    s[p + "mlp.c_fc.weight"], s[p + "mlp.c_fc.bias"] = r(4 * width, width), r(4 * width)
    s[p + "mlp.c_proj.weight"], s[p + "mlp.c_proj.bias"] = r(width, 4 * width), r(width)
    s[p + "ln_2.weight"], s[p + "ln_2.bias"] = 1 + r(width), r(width)


def _save(path, state):
    torch.save({"state_dict": state, "epoch": 3, "global_step": 100, "hyper_parameters": {"config": {"vit": "ViT-B/16"}}},
               path)
    return path


def _import(tmp_path, state, capsys):
    src, out = _save(tmp_path / "m3ae.ckpt", state), tmp_path / "m3ae.pt"
    code = main(["import-m3ae", str(src), "--out", str(out), *sum((["--set", h] for h in HEADS), [])])
    return code, out, capsys.readouterr()


def _model_from(out, printed: str):
    """The paper profile with the overrides the import printed: built with model.init."""
    line = printed.split("use it with --profile paper", 1)[1].splitlines()[0]
    sets = line.split("--set")[1:]
    cfg = apply_overrides(profile("paper"), [*HEADS, *(s.strip() for s in sets)])
    vocab = TextVocab(size=V, pad_id=1, mask_id=V - 1, cls_id=0, sep_id=2, special_ids=(0, 1, 2, 3, V - 1))
    return cfg, build_model(cfg.model, vocab)


def test_import_converts_every_key_and_model_init_loads_it(tmp_path, capsys):
    official = _official_state()
    code, out, printed = _import(tmp_path, official, capsys)
    assert code == 0, printed.err
    state = load_checkpoint(out)
    cfg, model = _model_from(out, printed.out)
    assert cfg.model.init == str(out) and cfg.model.vision.depth == LAYERS and cfg.model.vision.image_size == 48
    assert cfg.model.fusion.input_norm is False and cfg.data.vocab_size == V
    own = model.state_dict()
    assert set(own) == set(state["model"])
    for key, tensor in state["model"].items():
        assert torch.equal(own[key], tensor), key
    # the vision tower as timm's own OpenAI-CLIP converter maps it
    clip = {k.removeprefix("vision_encoder."): t for k, t in official.items() if k.startswith("vision_encoder.visual.")}
    vit = VisionTransformer(img_size=48, patch_size=PATCH, embed_dim=W, depth=LAYERS, num_heads=2, pre_norm=True,
                            num_classes=0, global_pool="")
    for key, tensor in _convert_openai_clip(clip, vit).items():
        assert torch.equal(own[f"vision_encoder.vit.{key}"], tensor), key
    assert torch.equal(own["fusion.layers.1.text.cross_attn.kv.weight"],
                       torch.cat([official["multi_modal_language_layers.1.crossattention.self.key.weight"],
                                  official["multi_modal_language_layers.1.crossattention.self.value.weight"]]))
    assert "not imported" in printed.out and "decoder_pos_embed" in printed.out


def _bert_cross_layer(official, prefix, x, y):
    """The official BertCrossLayer (post-norm self-attention, cross-attention, FFN), written out."""
    def attention(q_in, kv_in, p):
        lin = lambda name, t: F.linear(t, official[f"{p}.{name}.weight"], official[f"{p}.{name}.bias"])  # noqa: E731
        split = lambda t: t.view(t.shape[0], t.shape[1], 2, H // 2).transpose(1, 2)  # noqa: E731
        q, k, v = split(lin("self.query", q_in)), split(lin("self.key", kv_in)), split(lin("self.value", kv_in))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(q_in.shape)
        return F.layer_norm(q_in + lin("output.dense", out), (H,), official[f"{p}.output.LayerNorm.weight"],
                            official[f"{p}.output.LayerNorm.bias"], eps=1e-12)
    x = attention(x, x, prefix + "attention")
    x = attention(x, y, prefix + "crossattention")
    hidden = F.gelu(F.linear(x, official[prefix + "intermediate.dense.weight"], official[prefix + "intermediate.dense.bias"]))
    out = F.linear(hidden, official[prefix + "output.dense.weight"], official[prefix + "output.dense.bias"])
    return F.layer_norm(x + out, (H,), official[prefix + "output.LayerNorm.weight"],
                        official[prefix + "output.LayerNorm.bias"], eps=1e-12)


def test_an_imported_fusion_layer_computes_the_official_layer(tmp_path, capsys):
    official = _official_state()
    code, out, printed = _import(tmp_path, official, capsys)
    assert code == 0, printed.err
    _, model = _model_from(out, printed.out)
    model.eval()
    image, text = torch.randn(2, 5, H), torch.randn(2, 4, H)
    with torch.no_grad():
        ours = model.fusion.layers[0].image(image, None, text, None)
    reference = _bert_cross_layer(official, "multi_modal_vision_layers.0.", image, text)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)  # LayerNorm eps 1e-5 here, 1e-12 there


def test_a_fine_tuned_checkpoint_imports_its_backbone(tmp_path, capsys):
    code, out, printed = _import(tmp_path, _official_state(heads=False, task_head=("vqa_head", 7)), capsys)
    assert code == 0, printed.err
    assert "fine-tuned task head" in printed.out and "--task TASK --data-root DIR keeps it" in printed.out
    assert "task_head" not in load_checkpoint(out)
    weights = load_checkpoint(out)["model"]
    assert not any(k.startswith(("objectives.", "itm_head.")) for k in weights)
    _, model = _model_from(out, printed.out)  # the pre-training heads the file lacks keep their init
    own = model.state_dict()
    assert "objectives.mim.decoder.embed.weight" in own
    assert all(torch.equal(own[k], t) for k, t in weights.items())


def test_unmapped_keys_are_listed_and_nothing_is_written(tmp_path, capsys):
    state = {**_official_state(), "mystery_head.weight": torch.zeros(3), "vision_encoder.visual.proj": torch.zeros(2)}
    code, out, printed = _import(tmp_path, state, capsys)
    assert code == 2 and not out.exists()
    assert "mystery_head.weight" in printed.err and "vision_encoder.visual.proj" in printed.err
    assert "Traceback" not in printed.err


def test_a_checkpoint_that_needs_pickled_objects_is_refused(tmp_path, capsys):
    src = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "callback": _Opaque()}, src)
    assert main(["import-m3ae", str(src), "--out", str(tmp_path / "x.pt")]) == 2
    assert "weights_only=True" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


class _Opaque:
    pass


def _roberta_style_tokenizer(folder, texts):
    """A tiny byte-level BPE tokenizer with RoBERTa's special tokens and ids (<s> 0, <pad> 1, </s> 2)."""
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                     sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                                     mask_token="<mask>")
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


def test_ablate_train_fine_tunes_from_an_imported_checkpoint(tmp_path, capsys):
    """The documented path: import, then `ablate train --profile paper --set pretrain.enabled=false
    --set model.init=FILE` on VQA-RAD (real-format fixture), at another image size than the checkpoint's."""
    from fixtures.real_datasets import write_vqa_rad

    root = tmp_path / "data"
    write_vqa_rad(root)
    texts = [q["question"] for split in ("train", "val", "test")
             for q in json.loads((root / "vqa_rad" / f"{split}set.json").read_text())]
    vocab = _roberta_style_tokenizer(tmp_path / "tokenizer", texts * 3 + ["a chest x-ray of the lungs"])
    src, out = _save(tmp_path / "m3ae.ckpt", _official_state(V=vocab)), tmp_path / "m3ae.pt"
    assert main(["import-m3ae", str(src), "--out", str(out), *sum((["--set", h] for h in HEADS), [])]) == 0
    line = capsys.readouterr().out.split("use it with --profile paper", 1)[1].splitlines()[0]
    args = ["train", "--profile", "paper", "--workdir", str(tmp_path / "runs"), "--run-name", "imported",
            "--set", f"data.root={root}", "--set", f"data.tokenizer={tmp_path / 'tokenizer'}",
            "--set", "pretrain.enabled=false", "--set", "finetune.precision=fp32",
            "--set", "finetune.per_task.vqa_rad.batch_size=4", "--set", "finetune.per_task.vqa_rad.epochs=1",
            "--set", "finetune.per_task.vqa_rad.image_size=64", "--set", "finetune.per_task.vqa_rad.max_length=24"]
    for override in [*HEADS, *(s.strip() for s in line.split("--set")[1:])]:
        args += ["--set", override]
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "runs" / "train" / "imported" / "metrics.json").read_text())
    assert set(summary["tasks"]["vqa_rad"]["test"]) == {"overall_acc", "open_acc", "closed_acc"}


# ---------------------------------------------------------------- released fine-tuned heads

# The official code's class order for the fixtures, worked out by hand from its prepro/make_arrow.py:
# VQA-RAD's ans2label is first appearance over train, val, test (train's three images ask _QA[0:3],
# [1:4], [2:5] of fixtures.real_datasets); MELINDA's is the sorted p_meth_label values.
OFFICIAL_ORDER = {"vqa_rad": ["yes", "no", "brain", "2", "left lung"],
                  "melinda": ["gel", "medical_imaging", "microscopy", "plot"]}
HEAD_OF = {"vqa_rad": "vqa_head", "melinda": "cls_head"}


def _import_released(tmp_path, capsys, task, classes=None, args=None):
    """A released fine-tuned checkpoint of `task` (its head with `classes` rows, default the
    official count) and the task's fixture files under tmp_path/data, imported with --task."""
    root = tmp_path / "data"
    WRITERS[task](root)
    vocab = _roberta_style_tokenizer(tmp_path / "tokenizer", ["Is there a mass in the left lung?",
                                                              "Figure 1: a microscopy image, with a comma."] * 3)
    official = _official_state(heads=False, task_head=(HEAD_OF[task], classes or len(OFFICIAL_ORDER[task])), V=vocab)
    src, out = _save(tmp_path / "released.ckpt", official), tmp_path / "released.pt"
    args = ["--task", task, "--data-root", str(root)] if args is None else args
    code = main(["import-m3ae", str(src), "--out", str(out), *args, *sum((["--set", h] for h in HEADS), [])])
    return code, out, official, capsys.readouterr()


def _evaluate_only(tmp_path, printed: str, task: str):
    """The paper profile with the import's overrides, the fixture data, evaluate_only."""
    line = printed.split("use it with --profile paper", 1)[1].splitlines()[0]
    return apply_overrides(profile("paper"), [
        *HEADS, *(s.strip() for s in line.split("--set")[1:]), f"data.root={tmp_path / 'data'}",
        f"data.tokenizer={tmp_path / 'tokenizer'}", "pretrain.enabled=false", "finetune.precision=fp32",
        "finetune.evaluate_only=true", f"finetune.per_task.{task}.image_size=64",
        f"finetune.per_task.{task}.max_length=24"])


@pytest.mark.parametrize("task", ["vqa_rad", "melinda"])
def test_a_released_head_gives_the_official_logit_for_every_answer(tmp_path, capsys, task):
    """Imported with --task, the head gives for every answer (class) the logit the official head
    gives for it, and evaluate_only scores it without a training step. VQA-RAD's training file is
    then rewritten in reverse order, so the loader's answer order is another: the rows follow the names."""
    code, out, official, printed = _import_released(tmp_path, capsys, task)
    assert code == 0, printed.err
    assert f"with its {HEAD_OF[task]} for task {task}: {len(OFFICIAL_ORDER[task])} classes" in printed.out
    assert load_checkpoint(out)["task_head"]["classes"] == OFFICIAL_ORDER[task]
    if task == "vqa_rad":
        path = tmp_path / "data/vqa_rad/trainset.json"
        path.write_text(json.dumps(json.loads(path.read_text())[::-1]))
    cfg = _evaluate_only(tmp_path, printed.out, task)
    result = finetune(cfg, task, None, tmp_path / "run", tmp_path / "cache", keep_model=True)
    labels = build_dataset(task, "train", cfg, None, tmp_path / "cache").label_names
    assert sorted(labels) == sorted(OFFICIAL_ORDER[task])
    assert (labels != OFFICIAL_ORDER[task]) == (task == "vqa_rad")
    head = HEAD_OF[task]
    reference = torch.nn.Sequential(torch.nn.Linear(2 * H, 2 * H), torch.nn.LayerNorm(2 * H), torch.nn.GELU(),
                                    torch.nn.Linear(2 * H, len(labels)))  # the official head
    reference.load_state_dict({k.removeprefix(head + "."): t for k, t in official.items() if k.startswith(head)})
    pooled = torch.randn(4, 2 * H)
    with torch.no_grad():
        ours, theirs = result.model.head(pooled), reference(pooled)
    output = result.model.head.get_submodule("net.3")
    for j, label in enumerate(labels):
        row = OFFICIAL_ORDER[task].index(label)
        assert torch.equal(output.weight[j], official[f"{head}.3.weight"][row]), label  # copied, not refitted
        torch.testing.assert_close(ours[:, j], theirs[:, row], rtol=1e-6, atol=1e-6)  # BLAS may sum in another order
    assert result.best_epoch == 0 and result.flops == 0
    assert set(result.metrics) == set(get_task(task).metric_names) == set(result.val_metrics)


def test_a_head_that_does_not_fit_the_data_is_a_clear_error(tmp_path, capsys):
    # at import: the head's class count against the official order of the files
    code, out, _, printed = _import_released(tmp_path, capsys, "vqa_rad", classes=7)
    assert code == 2 and not out.exists() and "Traceback" not in printed.err
    assert "its vqa_head has 7 classes, and the official order of vqa_rad" in printed.err and "has 5" in printed.err
    # at import: a VQA head for a classification task; --task without the data
    code, out, _, printed = _import_released(tmp_path, capsys, "vqa_rad", args=["--task", "melinda"])
    assert code == 2 and "--task melinda needs a cls_head" in printed.err and "has vqa_head" in printed.err
    code, out, _, printed = _import_released(tmp_path, capsys, "vqa_rad", args=["--task", "vqa_rad"])
    assert code == 2 and "pass --data-root DIR" in printed.err
    partial = {k: t for k, t in _official_state(heads=False, task_head=("vqa_head", 5)).items() if k != "vqa_head.1.bias"}
    src = _save(tmp_path / "partial.ckpt", partial)
    assert main(["import-m3ae", str(src), "--out", str(tmp_path / "partial.pt"), "--task", "vqa_rad",
                 "--data-root", str(tmp_path / "data"), *sum((["--set", h] for h in HEADS), [])]) == 2
    assert "its vqa_head does not have the layers of VQAHead" in capsys.readouterr().err
    # at load: the data has an answer the head was not trained on
    code, out, _, printed = _import_released(tmp_path, capsys, "vqa_rad")
    assert code == 0, printed.err
    cfg = _evaluate_only(tmp_path, printed.out, "vqa_rad")
    path = tmp_path / "data/vqa_rad/testset.json"
    original = path.read_text()
    path.write_text(original.replace('"left lung."', '"right lung"'))
    with pytest.raises(CheckpointMismatchError, match=r"vqa_rad head has 5 classes, the data 6.*'right lung'"):
        finetune(cfg, "vqa_rad", None, tmp_path / "run", tmp_path / "cache")
    # evaluate_only and no head for the task: a random head is not scored
    path.write_text(original)
    WRITERS["slake"](tmp_path / "data")
    with pytest.raises(ConfigError, match="slake would be scored with an untrained head"):
        finetune(cfg, "slake", None, tmp_path / "run", tmp_path / "cache")
