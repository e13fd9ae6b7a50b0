"""Does a pre-trained model's MLM look at the image? MLM accuracy on validation pairs, true vs shuffled images.

    .venv/bin/python scripts/mlm_grounding.py RUN/pretrain/checkpoint.pt --cache RUN/cache
    .venv/bin/python scripts/mlm_grounding.py CKPT --set model.mim.enabled=false   # an MLM + ITM checkpoint

The same words are masked in both passes (fixed seed); only the images differ
(each report gets the next report's image). The gap is what the image adds to
predicting the masked words: near zero means the text side learned alone. The
table splits it by the scene attribute a masked word names (modality, region,
a finding's kind, size, shape, intensity, side, position; the rest are the
report's other words).
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import torch


CATEGORIES = ("modality", "region", "kind", "size", "shape", "intensity", "side", "position")


def load_checkpoint_and_pairs(description: str, argv=None):
    """The command line of a grounding script (CHECKPOINT, --profile, --set, --cache) ->
    (args, cfg, tokenizer, validation synth_pairs, the checkpoint's model in eval mode)."""
    from m3ae.config import apply_overrides, profile
    from m3ae.data import build_dataset, build_tokenizer, text_vocab
    from m3ae.model import build_model
    from m3ae.train.checkpoint import load_checkpoint, load_model_weights

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--cache", type=Path, default=Path("ablate-runs/cache"), help="data and tokenizer cache")
    args = parser.parse_args(argv)
    cfg = apply_overrides(profile(args.profile), args.overrides)
    tokenizer = build_tokenizer(cfg, args.cache)
    pairs = build_dataset("synth_pairs", "val", cfg, tokenizer, args.cache)
    model = build_model(cfg.model, text_vocab(tokenizer))
    load_model_weights(model, load_checkpoint(args.checkpoint), cfg, source=str(args.checkpoint))
    return args, cfg, tokenizer, pairs, model.eval()


def main(argv=None) -> None:
    from m3ae.data import make_loader

    _, cfg, tokenizer, pairs, model = load_checkpoint_and_pairs(__doc__.split("\n")[0], argv)
    categories = word_categories(tokenizer)
    hits: dict[str, dict[str, list[int]]] = {}
    with torch.no_grad():
        for images in ("true", "shuffled"):
            torch.manual_seed(0)  # the same masked words in both passes
            hits[images] = collections.defaultdict(list)
            for batch in make_loader(pairs, 64, train=False, cfg=cfg, seed=0):
                pixels = batch.images if images == "true" else batch.images.roll(1, dims=0)
                out = model.forward_mlm(model.encode_image(pixels), batch, model.mask_text(batch))  # pred: logits
                for target, guess in zip(out.target.tolist(), out.pred.argmax(dim=-1).tolist()):
                    for name in ("all", categories.get(target, "other words")):
                        hits[images][name].append(int(target == guess))
    rate = lambda values: 100 * sum(values) / max(len(values), 1)  # noqa: E731
    true, shuffled = rate(hits["true"]["all"]), rate(hits["shuffled"]["all"])
    print(f"MLM accuracy on {len(pairs)} validation pairs: true images {true:.1f}%, "
          f"shuffled images {shuffled:.1f}%, image adds {true - shuffled:+.1f}")
    print("| masked word | n | true images | shuffled | image adds |\n|---|---|---|---|---|")
    for name in [*CATEGORIES, "other words"]:
        if hits["true"][name]:
            a, b = rate(hits["true"][name]), rate(hits["shuffled"][name])
            print(f"| {name} | {len(hits['true'][name])} | {a:.1f} | {b:.1f} | {a - b:+.1f} |")


def word_categories(tokenizer) -> dict[int, str]:
    """Token id -> the scene attribute its word names (single-piece words of the synthmed vocabulary)."""
    from m3ae.data.synthmed import text as T
    from m3ae.data.synthmed.scene import POSITIONS, SIDES

    vocab = tokenizer.get_vocab()
    intensity = {f"{modality}-{level}": phrases for modality, by_level in T.INTENSITY_WORDS.items()
                 for level, phrases in by_level.items()}  # each modality has its own words
    words = {"modality": T.MODALITY_WORDS, "region": T.REGION_WORDS, "kind": T.KIND_WORDS, "size": T.SIZE_WORDS,
             "shape": T.SHAPE_WORDS, "intensity": intensity,
             "side": {s: [s] for s in SIDES}, "position": {p: [p] for p in POSITIONS}}
    ids = {}
    for name in CATEGORIES:
        for phrases in words[name].values():
            for phrase in phrases:
                for word in phrase.lower().split():
                    if word in vocab and word not in ("of", "the", "scan", "image", "lesion"):
                        ids.setdefault(vocab[word], name)
    return ids


if __name__ == "__main__":
    main()
