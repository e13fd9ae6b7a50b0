"""`ablate import-m3ae`: an official M3AE Lightning checkpoint, built here at a tiny width
with the official code's key names and shapes (m3ae/modules/m3ae_module.py and its
modules), converted through the explicit key map and loaded through `model.init`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer, _convert_openai_clip
from transformers import RobertaConfig, RobertaModel

from ablations.cli import main
from m3ae.batch import TextVocab
from m3ae.config import apply_overrides, profile
from m3ae.model import build_model
from m3ae.train.checkpoint import load_checkpoint

W, H, D, V, LAYERS, PATCH, GRID = 32, 32, 16, 120, 2, 16, 3  # vision, fusion, MIM decoder widths; vocab; ...
# what the shapes do not tell: heads (the official code: width // 64) and, in 2 fusion layers, MIM's layer
HEADS = ["model.vision.num_heads=2", "model.text.num_heads=2", "model.fusion.num_heads=2",
         "model.mim.decoder_heads=2", "model.mim.recon_layer=1"]


def _official_state(heads: bool = True, task_head: bool = False, V: int = V) -> dict[str, torch.Tensor]:  # noqa: N803
    """A state_dict with the official key names and shapes, random values."""
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
    if task_head:
        s["vqa_head.0.weight"], s["vqa_head.3.weight"] = r(2 * H, 2 * H), r(7, 2 * H)
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
    code, out, printed = _import(tmp_path, _official_state(heads=False, task_head=True), capsys)
    assert code == 0, printed.err
    assert "fine-tuned task head" in printed.out
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
    import json

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
