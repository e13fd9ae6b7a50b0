"""The paper profile's towers from local files: timm's CLIP ViT-B/16 from a
safetensors file, RoBERTa from a `save_pretrained` directory.

Random-init towers of the same architectures at tiny widths are saved in
exactly those formats, loaded through the config, and must compute what the
saved models compute.
"""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed
from transformers import RobertaConfig, RobertaModel

from m3ae.batch import TextVocab
from m3ae.config import apply_overrides, profile
from m3ae.model import build_model

CLIP = profile("paper").model.vision.name
TINY_VIT = {"embed_dim": 32, "depth": 2, "num_heads": 2}
VOCAB = TextVocab(size=120, pad_id=1, mask_id=119, cls_id=0, sep_id=2, special_ids=(0, 1, 2, 3, 119))


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    """A CLIP ViT saved as timm's safetensors (at CLIP's own 224 px) and a RoBERTa directory."""
    folder = tmp_path_factory.mktemp("towers")
    torch.manual_seed(0)
    vit = timm.create_model(CLIP, pretrained=False, num_classes=0, global_pool="", **TINY_VIT).eval()
    save_file(vit.state_dict(), folder / "clip_vit.safetensors")
    roberta = RobertaModel(RobertaConfig(vocab_size=VOCAB.size, hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64, pad_token_id=1,
                                         max_position_embeddings=40)).eval()
    roberta.save_pretrained(folder / "roberta")
    return vit, roberta, folder


def _paper_model(folder, image_size: int):
    """The paper profile at tiny widths, its towers from the saved files."""
    cfg = apply_overrides(profile("paper"), {
        "model.vision.weights": str(folder / "clip_vit.safetensors"), "model.vision.image_size": image_size,
        "model.vision.width": 32, "model.vision.depth": 2, "model.vision.num_heads": 2,
        "model.text.pretrained": str(folder / "roberta"), "model.text.max_length": 16,
        "model.fusion.hidden_size": 32, "model.fusion.num_heads": 2, "model.fusion.num_layers": 1,
        "model.mim.recon_layer": 1, "model.mim.decoder_width": 32, "model.mim.decoder_heads": 2,
        "model.mim.decoder_depth": 1})
    return build_model(cfg.model, VOCAB).eval()


def test_paper_profile_uses_clips_vit():
    vision = profile("paper").model.vision
    assert "clip" in vision.name and vision.image_size == 288 and vision.patch_size == 16


def test_towers_load_from_local_files_and_compute_the_same(towers):
    vit, roberta, folder = towers
    model = _paper_model(folder, image_size=224)
    images = torch.randn(2, 3, 224, 224)
    ids = torch.tensor([[0, 5, 6, 7, 2, 1], [0, 8, 9, 2, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), vit.forward_features(images), rtol=0, atol=0)
        torch.testing.assert_close(model.encode_text(ids, mask),
                                   roberta(input_ids=ids, attention_mask=mask).last_hidden_state,
                                   rtol=1e-5, atol=1e-5)


def test_clip_positions_are_interpolated_to_the_configured_size(towers):
    vit, _, folder = towers
    model = _paper_model(folder, image_size=288)  # 18 x 18 patches from CLIP's 14 x 14
    loaded = model.vision_encoder.vit.pos_embed
    assert loaded.shape == (1, 1 + 18 * 18, 32)
    expected = resample_abs_pos_embed(vit.pos_embed, new_size=(18, 18), num_prefix_tokens=1)
    torch.testing.assert_close(loaded, expected)
    for name, tensor in vit.state_dict().items():  # everything else as saved
        if name != "pos_embed":
            torch.testing.assert_close(model.vision_encoder.vit.state_dict()[name], tensor, rtol=0, atol=0)
