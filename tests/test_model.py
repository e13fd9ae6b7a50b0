"""The M3AE model: outputs, masking inside the model, gradients by recon layer,
every registered component builds and trains, learning, determinism, sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from m3ae.batch import Batch, TextVocab
from m3ae.config import apply_overrides, profile
from m3ae.model import M3AE, ClassificationHead, Fused, M3AEOutput, VQAHead, build_model
from m3ae.model.masking import num_kept, patchify
from m3ae.model.objectives import MIMObjective, itm_pairs, mim
from m3ae.registry import IMAGE_MASKING, ITM_NEGATIVES, LANGUAGE_DECODERS, TEXT_MASKING, VISION_DECODERS

VOCAB = TextVocab(size=400, pad_id=0, mask_id=4, cls_id=2, sep_id=3, special_ids=(0, 1, 2, 3, 4))


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared 2-core machine
    yield
    torch.set_num_threads(before)


def model_cfg(*overrides: str):
    return apply_overrides(profile("smoke"), list(overrides)).model


def make_batch(batch_size: int = 8, length: int = 16, image_size: int = 32, seed: int = 1) -> Batch:
    """Smooth random images (learnable from neighbours), random texts of two-piece
    words, the second half of every other text padded."""
    g = torch.Generator().manual_seed(seed)
    images = F.interpolate(torch.randn(batch_size, 3, 4, 4, generator=g), size=image_size, mode="bilinear")
    ids = torch.randint(5, VOCAB.size, (batch_size, length), generator=g)
    attention = torch.ones(batch_size, length, dtype=torch.long)
    attention[::2, length // 2:] = 0
    ends = attention.sum(dim=1) - 1
    ids[:, 0] = VOCAB.cls_id
    ids[torch.arange(batch_size), ends] = VOCAB.sep_id
    ids[attention == 0] = VOCAB.pad_id
    word_ids = ((torch.arange(length) - 1) // 2).expand(batch_size, length).clone()
    word_ids[(ids == VOCAB.cls_id) | (ids == VOCAB.sep_id) | (attention == 0)] = -1
    return Batch(images=images, input_ids=ids, attention_mask=attention, word_ids=word_ids,
                 image_ids=torch.arange(batch_size))


def build(*overrides: str, seed: int = 0) -> M3AE:
    torch.manual_seed(seed)
    return build_model(model_cfg(*overrides), VOCAB)


# --------------------------------------------------------------------------- outputs


def test_forward_returns_named_losses_metrics_and_mim_prediction():
    model = build()
    batch = make_batch()
    out = model(batch)
    assert isinstance(out, M3AEOutput)
    assert set(out.losses) == {"mim_loss", "mlm_loss", "itm_loss"}
    assert set(out.metrics) == {"mlm_acc", "itm_acc"}
    assert torch.allclose(out.loss, sum(out.losses.values()))
    n = (32 // 8) ** 2
    assert out.mim_pred.shape == (8, n, 8 * 8 * 3)
    assert out.mim_mask.shape == (8, n)
    assert (out.mim_mask.sum(dim=1) == n - num_kept(n, 0.75)).all()
    out.loss.backward()
    assert all(p.grad is not None for p in model.fusion.parameters())


def test_weights_and_switches_shape_the_total():
    batch = make_batch()
    model = build("model.itm.enabled=false", "model.mim.weight=2.0", "model.mlm.weight=0.5")
    torch.manual_seed(3)
    out = model(batch)
    assert set(out.losses) == {"mim_loss", "mlm_loss"} and set(out.metrics) == {"mlm_acc"}
    assert torch.allclose(out.loss, 2.0 * out.losses["mim_loss"] + 0.5 * out.losses["mlm_loss"])
    only_itm = build("model.mim.enabled=false", "model.mlm.enabled=false")
    out = only_itm(batch)
    assert set(out.losses) == {"itm_loss"} and out.mim_pred is None and out.mim_mask is None


def test_encode_gives_fused_tokens_and_pooled_output_for_heads():
    model = build().eval()
    batch = make_batch()
    fused = model.encode(batch.images, batch.input_ids, batch.attention_mask)
    d = model.hidden_size
    assert isinstance(fused, Fused)
    assert fused.image_tokens.shape == (8, 1 + 16, d)
    assert fused.text_tokens.shape == (8, 16, d)
    assert fused.pooled.shape == (8, 2 * d)
    assert model.itm_head(fused.pooled).shape == (8, 2)
    assert VQAHead(2 * d, 7)(fused.pooled).shape == (8, 7)
    assert ClassificationHead(2 * d, 5)(fused.pooled).shape == (8, 5)


def test_reconstruction_images_keep_visible_patches_and_fill_holes():
    model = build()
    batch = make_batch()
    original, masked, recon = model.reconstruction_images(batch)
    assert original.shape == masked.shape == recon.shape == batch.images.shape
    assert model.training  # restored
    for image in (original, masked, recon):
        assert image.min() >= 0 and image.max() <= 1
    shown = patchify(masked, 8)
    hidden = (shown == 0.5).all(dim=-1)  # normalised 0 -> mid grey
    n = 16
    assert (hidden.sum(dim=1) == n - num_kept(n, 0.75)).all()
    visible = ~hidden
    assert torch.allclose(patchify(recon, 8)[visible], patchify(original, 8)[visible])
    assert not torch.allclose(patchify(recon, 8)[hidden], patchify(original, 8)[hidden])


def test_param_groups_cover_every_parameter_once():
    model = build()
    groups = model.param_groups_by_role()
    assert set(groups) == {"encoders", "fusion", "heads"}
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert {id(p) for p in model.itm_head.parameters()} <= {id(p) for p in groups["heads"]}


def test_padding_never_leaks_into_fusion_or_the_language_decoder():
    model = build("model.mlm.decoder=transformer").eval()
    batch = make_batch()
    pad = batch.attention_mask == 0
    images = model.encode_image(batch.images)
    texts = model.encode_text(batch.input_ids, batch.attention_mask)
    noisy = texts.clone()
    noisy[pad] = 100 * torch.randn_like(noisy[pad])
    clean, dirty = (model.fuse(images, t, batch.attention_mask) for t in (texts, noisy))
    assert torch.allclose(clean.image[-1], dirty.image[-1], atol=1e-5)
    assert torch.allclose(clean.text[-1][~pad], dirty.text[-1][~pad], atol=1e-5)
    decoder = model.objectives["mlm"].decoder
    states = clean.text[-1].clone()
    logits = decoder(states, batch.attention_mask, ~pad)
    states[pad] = 100 * torch.randn_like(states[pad])
    assert torch.allclose(decoder(states, batch.attention_mask, ~pad), logits, atol=1e-5)


# --------------------------------------------------------------------------- MIM specifics


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mim_loss_depends_only_on_masked_patch_targets(norm_pix):
    torch.manual_seed(0)
    cfg = model_cfg(f"model.mim.norm_pix_loss={norm_pix}")
    objective: MIMObjective = mim(cfg, cfg.fusion.hidden_size, VOCAB, grid=(4, 4), patch_size=8)
    states = torch.randn(2, 1 + 4, cfg.fusion.hidden_size)  # [CLS] + 4 visible patches
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, 4:] = True
    ids_restore = torch.arange(16).expand(2, 16)
    patches = torch.randn(2, 16, 192)
    loss = objective(states, ids_restore, patches, mask).loss
    changed_visible = patches.clone()
    changed_visible[:, :4] = torch.randn(2, 4, 192) * 5
    assert torch.equal(objective(states, ids_restore, changed_visible, mask).loss, loss)
    changed_masked = patches.clone()
    changed_masked[:, 7] += torch.randn(2, 192)
    assert not torch.equal(objective(states, ids_restore, changed_masked, mask).loss, loss)


def _fusion_layers_with_grad(model: M3AE) -> list[int]:
    """1-based indices of fusion layers where some parameter got a non-zero gradient."""
    return [i + 1 for i, layer in enumerate(model.fusion.layers)
            if any(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())]


@pytest.mark.parametrize("recon_layer, expected", [(0, []), (1, [1]), (2, [1, 2]), (-1, [1, 2, 3])])
def test_mim_gradient_reaches_fusion_layers_up_to_recon_layer(recon_layer, expected):
    model = build("model.fusion.num_layers=3", f"model.mim.recon_layer={recon_layer}",
                  "model.mlm.enabled=false", "model.itm.enabled=false")
    out = model(make_batch())
    out.losses["mim_loss"].backward()
    assert _fusion_layers_with_grad(model) == expected
    assert model.fusion.image_proj.weight.grad.abs().sum() > 0  # the projections always do
    if expected:  # inside a layer, the image stream carries MIM's gradient
        assert model.fusion.layers[expected[-1] - 1].image.ffn[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("recon_layer, expected", [(1, [1]), (-1, [1, 2, 3])])
def test_mlm_gradient_reaches_fusion_layers_up_to_its_recon_layer(recon_layer, expected):
    model = build("model.fusion.num_layers=3", f"model.mlm.recon_layer={recon_layer}",
                  "model.mim.enabled=false", "model.itm.enabled=false")
    model(make_batch()).losses["mlm_loss"].backward()
    assert _fusion_layers_with_grad(model) == expected


def test_vision_encoder_sees_only_visible_patches():
    model = build("model.vision.image_size=64")  # 64 patches
    images = make_batch(image_size=64).images

    def flops(fn, *args):
        with FlopCounterMode(display=False) as counter:
            fn(*args)
        return counter.get_total_flops()

    embed = flops(model.vision_encoder.vit.patch_embed, images)  # runs on every patch, by design
    full = flops(model.encode_image, images, None) - embed
    keep = torch.arange(16).expand(8, 16)  # 25% visible
    assert model.encode_image(images, keep).shape == (8, 1 + 16, model.vision_encoder.width)
    assert flops(model.encode_image, images, keep) - embed < 0.3 * full  # 17 of 65 tokens


@pytest.mark.parametrize("name", ["vit_small_patch16_224", "vit_base_patch16_clip_224",  # pre-norm (CLIP)
                                  "vit_small_patch14_reg4_dinov2"])  # register tokens, positions without [CLS]
def test_timm_vits_by_name_encode_visible_patches(name):
    model = build(f"model.vision.name={name}")
    keep = torch.tensor([[0, 5, 9, 15]] * 2)
    tokens = model.encode_image(make_batch(2).images, keep)
    assert tokens.shape == (2, 1 + 4, model.vision_encoder.width)
    full = model.encode_image(make_batch(2).images)
    assert full.shape == (2, 1 + 16, model.vision_encoder.width)


def test_a_vit_without_cls_token_is_refused_by_name():
    with pytest.raises(ValueError, match=r"vit_base_patch16_siglip_224 has no \[CLS\] token"):
        build("model.vision.name=vit_base_patch16_siglip_224")


# --------------------------------------------------------------------------- ITM negatives


@pytest.mark.parametrize("sampler", ITM_NEGATIVES.names())
def test_itm_negatives_are_other_images_and_follow_the_ratio(sampler):
    torch.manual_seed(0)
    image_ids = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6, 7, 8])  # texts 0 and 1 describe the same image
    candidates = image_ids[None, :] != image_ids[:, None]
    ids = torch.randint(1, 50, (10, 6))
    weights = ITM_NEGATIVES.get(sampler)(torch.randn(10, 16), torch.randn(10, 16), ids, torch.ones_like(ids))
    index, labels = itm_pairs(candidates, weights, 0.5)
    assert int((labels == 0).sum()) == 5
    negatives = labels == 0
    assert (image_ids[index[negatives]] != image_ids[negatives]).all()
    assert (index[~negatives] == torch.arange(10)[~negatives]).all()


def _picks(weights: torch.Tensor) -> torch.Tensor:
    """The negative drawn for each of 8 texts, 20 times over."""
    candidates = ~torch.eye(8, dtype=torch.bool)
    return torch.stack([itm_pairs(candidates, weights, 0.99)[0] for _ in range(20)])


def test_hard_negatives_prefer_similar_pairs():
    torch.manual_seed(0)
    features = torch.eye(4).repeat_interleave(2, dim=0) + 0.01 * torch.randn(8, 4)  # 4 clusters of two
    ids = torch.zeros(8, 3, dtype=torch.long)
    weights = ITM_NEGATIVES.get("hard")(features, features, ids, torch.ones_like(ids))
    partner = torch.arange(8) ^ 1  # the other member of each cluster
    assert (_picks(weights) == partner).float().mean() > 0.9


def test_text_overlap_negatives_prefer_reports_that_share_words():
    torch.manual_seed(0)
    # 4 pairs of reports: both of a pair share their first three words, every report ends in its own word;
    # padding (id 0, attention 0) must not count as a shared word
    ids = torch.tensor([[10 + i // 2, 20 + i // 2, 30 + i // 2, 40 + i, 0, 0] for i in range(8)])
    attention = (ids > 0).long()
    unused = torch.randn(8, 4)  # the sampler reads only the words
    weights = ITM_NEGATIVES.get("text_overlap")(unused, unused, ids, attention)
    partner = torch.arange(8) ^ 1
    assert (_picks(weights) == partner).float().mean() > 0.9


# --------------------------------------------------------------------------- contract tests


def _train_steps(model: M3AE, batch: Batch, steps: int, lr: float = 2e-3) -> list[dict[str, float]]:
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    history = []
    for _ in range(steps):
        out = model(batch)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        history.append({k: v.item() for k, v in out.losses.items()})
    return history


COMPONENTS = (
    [("model.mim.decoder", name) for name in VISION_DECODERS.names()]
    + [("model.mlm.decoder", name) for name in LANGUAGE_DECODERS.names()]
    + [("model.mim.masking", name) for name in IMAGE_MASKING.names()]
    + [("model.mlm.masking", name) for name in TEXT_MASKING.names()]
    + [("model.itm.negatives", name) for name in ITM_NEGATIVES.names()]
)


@pytest.mark.parametrize("path, name", COMPONENTS, ids=[f"{p.split('.', 1)[1]}={n}" for p, n in COMPONENTS])
def test_every_registered_component_builds_and_trains_by_config_alone(path, name):
    model = build(f"{path}={name}")
    batch = make_batch()
    before = [p.detach().clone() for p in model.parameters()]
    history = _train_steps(model, batch, steps=3)
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert changed > 0.9 * len(before)


def test_same_seed_gives_identical_losses():
    batch = make_batch()
    runs = []
    for _ in range(2):
        model = build("model.mim.masking=block", "model.itm.negatives=hard", seed=7)
        torch.manual_seed(11)
        runs.append(_train_steps(model, batch, steps=3))
    assert runs[0] == runs[1]
    other = build("model.mim.masking=block", "model.itm.negatives=hard", seed=8)
    torch.manual_seed(11)
    assert _train_steps(other, batch, steps=3) != runs[0]


def _eval_losses(model: M3AE, batch: Batch) -> dict[str, float]:
    """Losses with dropout off and fixed masks / negatives, comparable across training."""
    model.eval()
    torch.manual_seed(1234)
    with torch.no_grad():
        losses = {k: v.item() for k, v in model(batch).losses.items()}
    model.train()
    return losses


def test_a_few_hundred_steps_on_one_batch_drive_every_loss_down():
    model = build("model.fusion.dropout=0.0", "model.text.dropout=0.0")
    batch = make_batch()
    start = _eval_losses(model, batch)
    torch.manual_seed(0)
    _train_steps(model, batch, steps=200, lr=1e-3)
    end = _eval_losses(model, batch)
    assert end["mlm_loss"] < 0.4 * start["mlm_loss"], (start, end)
    assert end["itm_loss"] < 0.3 * start["itm_loss"], (start, end)
    assert end["mim_loss"] < 0.6 * start["mim_loss"], (start, end)


# --------------------------------------------------------------------------- sizes and weights


def test_paper_profile_has_vit_b16_roberta_base_and_six_fusion_layers():
    cfg = profile("paper").model
    vocab = TextVocab(size=50265, pad_id=1, mask_id=50264, cls_id=0, sep_id=2, special_ids=(0, 1, 2, 3, 50264))
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = build_model(cfg, vocab)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert 85.5e6 < count(model.vision_encoder) < 86.5e6  # CLIP ViT-B/16 (86M) at 288 px, no classifier
    assert 123.5e6 < count(model.text_encoder) < 125e6  # RoBERTa-base (125M with its pooler)
    assert len(model.fusion.layers) == 6 and model.hidden_size == 768
    assert model.fusion.layers[0].image.self_attn.num_heads == 12
    assert 110e6 < count(model.fusion) < 120e6  # 6 x (image + text) co-attention layers of 768


def test_sincos_positions_are_fixed_distinct_and_survive_training():
    from m3ae.model.pos_embed import sincos_2d

    model = build("model.vision.pos_embed=sincos")
    vit = model.vision_encoder.vit
    table = vit.pos_embed.detach().clone()
    assert not vit.pos_embed.requires_grad
    assert torch.equal(table[0, 0], torch.zeros(vit.embed_dim))  # [CLS]
    assert torch.equal(table[:, 1:], sincos_2d(vit.embed_dim, model.grid_size, cls_token=False))
    patches = table[0, 1:]
    assert torch.cdist(patches, patches).add(torch.eye(len(patches))).min() > 0.1  # every patch its own place
    _train_steps(model, make_batch(), steps=3)
    assert torch.equal(vit.pos_embed, table)
    learned = build().vision_encoder.vit.pos_embed
    assert learned.requires_grad and learned.std() < 0.05  # timm's default: a small random table, trained


def test_vision_weights_load_from_a_local_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    source = build()
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in source.vision_encoder.vit.state_dict().items()}, str(path))
    loaded = build(f"model.vision.weights={path}", seed=1)
    for (name, a), b in zip(source.vision_encoder.vit.state_dict().items(), loaded.vision_encoder.vit.state_dict().values()):
        assert torch.equal(a, b), name


def test_text_encoder_loads_from_a_local_directory(tmp_path):
    source = build("model.text.kind=roberta")
    source.text_encoder.model.save_pretrained(tmp_path / "text")
    loaded = build("model.text.kind=roberta", f"model.text.pretrained={tmp_path / 'text'}", seed=1)
    for a, b in zip(source.text_encoder.parameters(), loaded.text_encoder.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="model.text.pretrained"):
        build(f"model.text.pretrained={tmp_path / 'missing'}")


# --------------------------------------------------------------------------- model.passes


def _step_flops(model: M3AE, batch: Batch) -> int:
    with FlopCounterMode(display=False) as counter:
        model(batch).loss.backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("itm", [True, False])
def test_joint_passes_train_every_objective_with_fewer_flops(itm):
    batch = make_batch()
    separate = build(f"model.itm.enabled={itm}")
    joint = build("model.passes=joint", f"model.itm.enabled={itm}")
    assert _step_flops(joint, batch) < 0.9 * _step_flops(separate, batch)
    history = _train_steps(joint, batch, steps=3)
    assert set(history[0]) == {"mim_loss", "mlm_loss"} | ({"itm_loss"} if itm else set())
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)


def test_joint_passes_draw_the_same_masks_as_separate_passes():
    """Same seed, same masks: `passes` is a paired factor (common random numbers across settings)."""
    batch = make_batch()
    masks = []
    for passes in ("separate", "joint"):
        model = build(f"model.passes={passes}", "model.itm.enabled=false")
        torch.manual_seed(3)
        masks.append(model(batch).mim_mask)
    torch.testing.assert_close(masks[0], masks[1])


@pytest.mark.parametrize("mim_layer, mlm_layer", [(1, 2), (2, 1), (2, 2), (0, 2)])
def test_joint_pass_reads_each_objective_at_its_own_layer(mim_layer, mlm_layer):
    model = build("model.passes=joint", "model.itm.enabled=false", "model.fusion.num_layers=2",
                  f"model.mim.recon_layer={mim_layer}", f"model.mlm.recon_layer={mlm_layer}")
    model(make_batch()).loss.backward()
    image_grads = [any(p.grad is not None for p in layer.image.parameters()) for layer in model.fusion.layers]
    text_grads = [any(p.grad is not None for p in layer.text.parameters()) for layer in model.fusion.layers]
    # a stream's layer k trains when some objective reads a layer >= k of either stream (cross-attention)
    deepest = max(mim_layer, mlm_layer)
    assert image_grads == [k < mim_layer or k < deepest - 1 for k in range(2)]
    assert text_grads == [k < mlm_layer or k < deepest - 1 for k in range(2)]
