"""Config: profiles, validation at config time, dotted overrides, YAML and flat views."""

from __future__ import annotations

import pytest

from m3ae.config import Config, ConfigError, apply_overrides, flatten, from_dict, from_yaml, profile, to_yaml
from m3ae.keys import pretrain_key, trial_id

CONTRACT_PATHS = [
    "model.mim.enabled", "model.mim.mask_ratio", "model.mim.masking", "model.mim.recon_layer", "model.mim.decoder",
    "model.mim.decoder_depth", "model.mim.decoder_width", "model.mim.norm_pix_loss", "model.mim.weight",
    "model.mlm.enabled", "model.mlm.mask_ratio", "model.mlm.masking", "model.mlm.recon_layer", "model.mlm.decoder",
    "model.mlm.weight", "model.itm.enabled", "model.itm.negatives", "model.itm.weight", "model.vision.name",
    "model.vision.image_size", "model.vision.patch_size", "model.text.kind", "model.fusion.num_layers",
    "model.fusion.hidden_size", "pretrain.steps", "pretrain.batch_size", "pretrain.lr", "data.root", "seed",
]


@pytest.mark.parametrize("name", ["smoke", "laptop", "paper"])
def test_profiles_round_trip_through_yaml(name):
    cfg = profile(name)
    assert from_yaml(to_yaml(cfg)) == cfg


def test_paper_profile_has_the_papers_sizes():
    model = profile("paper").model
    assert (model.vision.name, model.vision.image_size, model.vision.patch_size) == (
        "vit_base_patch16_clip_quickgelu_224", 288, 16)
    assert (model.text.kind, model.text.hidden_size, model.text.num_layers) == ("roberta", 768, 12)
    assert (model.fusion.num_layers, model.fusion.hidden_size, model.fusion.num_heads) == (6, 768, 12)
    assert (model.mim.decoder_depth, model.mim.decoder_width, model.mim.decoder_heads) == (4, 384, 6)
    assert (model.mim.mask_ratio, model.mlm.mask_ratio, model.mim.recon_layer) == (0.75, 0.15, 3)


def test_flatten_gives_every_contract_path_with_its_value():
    cfg = apply_overrides(profile("smoke"), ["model.mim.mask_ratio=0.5", "seed=3"])
    flat = flatten(cfg)
    assert set(CONTRACT_PATHS) <= set(flat)
    assert flat["model.mim.mask_ratio"] == 0.5 and flat["seed"] == 3
    assert not any(isinstance(v, dict) for v in flat.values())


def test_overrides_apply_to_any_field_and_change_keys():
    base = profile("smoke")
    cfg = apply_overrides(base, {"model.mim.masking": "block", "model.itm.negatives": "hard",
                                 "model.mlm.decoder": "transformer", "model.mim.decoder": "mlp"})
    assert cfg.model.mim.masking == "block" and cfg.model.mlm.decoder == "transformer"
    assert pretrain_key(cfg) != pretrain_key(base) and trial_id(cfg) != trial_id(base)
    assert pretrain_key(apply_overrides(base, ["finetune.epochs=3"])) == pretrain_key(base)
    for finetune_data in ("data.synth_vqa_images=30", "data.synth_questions_per_image=2", "data.num_workers=2"):
        assert pretrain_key(apply_overrides(base, [finetune_data])) == pretrain_key(base), finetune_data
    assert pretrain_key(apply_overrides(base, ["data.synth_pairs=300"])) != pretrain_key(base)
    assert apply_overrides(base, ["model.mim.mask_ratio=0.5"]).model.mim.mask_ratio == 0.5


@pytest.mark.parametrize("override, expected", [
    ("model.mim.mask_ratio=1.2", r"model\.mim\.mask_ratio: must be a ratio strictly between 0 and 1, got 1\.2"),
    ("model.mlm.mask_ratio=0", r"model\.mlm\.mask_ratio: .*between 0 and 1"),
    ("model.mim.recon_layer=9", r"model\.mim\.recon_layer: must be -1 \(last\) or 0\.\.2 .*got 9"),
    ("model.mlm.recon_layer=-2", r"model\.mlm\.recon_layer: must be -1"),
    ("model.mim.decoder=transfomer", r"model\.mim\.decoder: unknown vision decoder 'transfomer'.*"
                                     r"did you mean 'transformer'"),
    ("model.mlm.decoder=cnn", r"model\.mlm\.decoder: unknown language decoder 'cnn': expected one of "
                              r"\['mlp', 'transformer'\]"),
    ("model.mim.masking=blocks", r"model\.mim\.masking: .*did you mean 'block'"),
    ("model.mlm.masking=wholeword", r"model\.mlm\.masking: .*did you mean 'whole_word'"),
    ("model.itm.negatives=hardest", r"model\.itm\.negatives: .*did you mean 'hard'"),
    ("model.text.kind=robertta", r"model\.text\.kind: .*did you mean 'roberta'"),
    ("model.vision.name=vit_tiny_patch16_22", r"model\.vision\.name: unknown timm model .*"
                                              r"did you mean 'vit_tiny_patch16_224'"),
    ("model.vision.encoder=tim", r"model\.vision\.encoder: .*did you mean 'timm'"),
    ("model.vision.pos_embed=sin", r"model\.vision\.pos_embed: must be 'learned' or 'sincos', got 'sin'"),
    ("model.vision.image_size=30", r"model\.vision\.image_size: must be a positive multiple of patch_size 8"),
    ("model.mim.decoder_width=33", r"model\.mim\.decoder_width: must be divisible by decoder_heads 2"),
    ("model.mim.decoder_width=30", r"model\.mim\.decoder_width: must be divisible by 4"),
    ("model.mim.weight=-1", r"model\.mim\.weight: must be a finite number >= 0, got -1"),
    # every field has a range: found when the config is built, before a run directory or cache exists
    ("seed=-1", r"seed: must be in 0\.\.4294967295, got -1"),
    ("seed=4294967296", r"seed: must be in 0\.\.4294967295"),
    ("data.synth_seed=-3", r"data\.synth_seed: must be in 0\.\.4294967295"),
    ("finetune.batch_size=0", r"finetune\.batch_size: must be at least 1, got 0"),
    ("pretrain.batch_size=1", r"pretrain\.batch_size: must be at least 2"),
    ("data.synth_questions_per_image=-1", r"data\.synth_questions_per_image: must be at least 1, got -1"),
    ("data.synth_cls_pairs=0", r"data\.synth_cls_pairs: must be at least 1"),
    ("finetune.grad_clip=-1", r"finetune\.grad_clip: must be a finite number >= 0, got -1"),
    ("finetune.grad_clip=.nan", r"finetune\.grad_clip: must be a finite number >= 0, got nan"),
    ("pretrain.fusion_lr_mult=.inf", r"pretrain\.fusion_lr_mult: must be a finite number > 0, got inf"),
    ("finetune.head_lr_mult=-5", r"finetune\.head_lr_mult: must be a finite number > 0"),
    ("pretrain.weight_decay=-1", r"pretrain\.weight_decay: must be a finite number >= 0"),
    ("finetune.lr=.nan", r"finetune\.lr: must be a finite number > 0, got nan"),
    ("model.text.dropout=2", r"model\.text\.dropout: must be a number in \[0, 1\), got 2"),
    ("model.fusion.dropout=-0.1", r"model\.fusion\.dropout: must be a number in \[0, 1\)"),
    ("model.vision.drop_path=1", r"model\.vision\.drop_path: must be a number in \[0, 1\)"),
    ("model.text.num_layers=0", r"model\.text\.num_layers: must be at least 1, got 0"),
    ("model.text.num_heads=0", r"model\.text\.num_heads: must be at least 1, got 0"),
    ("model.fusion.num_heads=0", r"model\.fusion\.num_heads: must be at least 1, got 0"),
    ("model.fusion.num_heads=3", r"model\.fusion\.hidden_size: must be divisible by num_heads 3, got 32"),
    ("model.mim.decoder_heads=0", r"model\.mim\.decoder_heads: must be at least 1, got 0"),
    ("model.fusion.mlp_ratio=.inf", r"model\.fusion\.mlp_ratio: must be a finite number > 0"),
    ("model.itm.weight=.inf", r"model\.itm\.weight: must be a finite number >= 0, got inf"),
    ("pretrain.eval_every=-1", r"pretrain\.eval_every: must be at least 0"),
    ("finetune.eval_every_epochs=0", r"finetune\.eval_every_epochs: must be at least 1"),
    ("threads=-1", r"threads: must be at least 0, got -1"),
    ("model.mim.mask_ratio=abc", r"model\.mim\.mask_ratio: expected float, got str 'abc'"),
    ("model.mim.enabled=3", r"model\.mim\.enabled: expected bool"),
])
def test_bad_values_fail_at_config_time_naming_the_path(override, expected):
    with pytest.raises(ConfigError, match=expected):
        apply_overrides(profile("smoke"), [override])


def test_recon_layer_is_checked_against_the_fusion_depth():
    paper = profile("paper")
    with pytest.raises(ConfigError, match=r"model\.mim\.recon_layer: .*0\.\.6 \(model\.fusion\.num_layers is 6\), got 9"):
        apply_overrides(paper, ["model.mim.recon_layer=9"])
    assert apply_overrides(paper, ["model.mim.recon_layer=6"]).model.mim.recon_layer == 6
    with pytest.raises(ConfigError, match="model.mim.recon_layer"):  # shrinking the stack below it
        apply_overrides(paper, ["model.fusion.num_layers=2"])


def test_pretraining_needs_an_objective():
    off = ["model.mim.enabled=false", "model.mlm.enabled=false", "model.itm.enabled=false"]
    with pytest.raises(ConfigError, match="at least one objective"):
        apply_overrides(profile("smoke"), off)
    assert not apply_overrides(profile("smoke"), off + ["pretrain.enabled=false"]).pretrain.enabled


@pytest.mark.parametrize("path, suggestion", [
    ("model.mim.mask_ration", "model.mim.mask_ratio"),
    ("model.mlm.recon_layers", "model.mlm.recon_layer"),
    ("model.fusion.num_layer", "model.fusion.num_layers"),
    ("model.vision.patchsize", "model.vision.patch_size"),
    ("pretrain.step", "pretrain.steps"),
])
def test_unknown_override_path_suggests_the_closest(path, suggestion):
    with pytest.raises(ConfigError, match=rf"unknown config path '{path}' \(did you mean {suggestion}\?\)"):
        apply_overrides(profile("smoke"), [f"{path}=1"])


def test_unknown_yaml_key_names_the_file_and_suggests():
    with pytest.raises(ConfigError, match=r"study\.yaml: unknown config key 'model\.mim\.mask_rato' "
                                          r"\(did you mean model\.mim\.mask_ratio\?\)"):
        from_yaml("model:\n  mim:\n    mask_rato: 0.5\n", source="study.yaml")


def test_unknown_profile_suggests():
    with pytest.raises(ConfigError, match="did you mean 'laptop'"):
        profile("lapop")


def test_partial_dicts_keep_defaults():
    cfg = from_dict({"model": {"mim": {"mask_ratio": 0.6}}})
    assert cfg.model.mim.mask_ratio == 0.6 and cfg.model.mlm == Config().model.mlm
