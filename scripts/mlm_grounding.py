"""Does a pre-trained model's MLM look at the image? MLM accuracy on validation pairs, true vs shuffled images.

    .venv/bin/python scripts/mlm_grounding.py RUN/pretrain/checkpoint.pt --set pretrain.steps=1500

The same words are masked in both passes (fixed seed); only the images differ
(each report gets the next report's image). The gap is what the image adds to
predicting the masked words: near zero means the text side learned alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main(argv=None) -> None:
    from m3ae.config import apply_overrides, profile
    from m3ae.data import build_dataset, build_tokenizer, make_loader, text_vocab
    from m3ae.model import build_model
    from m3ae.train.checkpoint import load_checkpoint, load_model_weights

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    model.eval()
    accuracy = {}
    with torch.no_grad():
        for images in ("true", "shuffled"):
            torch.manual_seed(0)  # the same masked words in both passes
            correct = []
            for batch in make_loader(pairs, 64, train=False, cfg=cfg, seed=0):
                pixels = batch.images if images == "true" else batch.images.roll(1, dims=0)
                correct.append(model.forward_mlm(model.encode_image(pixels), batch).metrics["mlm_acc"])
            accuracy[images] = 100 * sum(correct) / len(correct)
    print(f"MLM accuracy on {len(pairs)} validation pairs: true images {accuracy['true']:.1f}%, "
          f"shuffled images {accuracy['shuffled']:.1f}%, image adds {accuracy['true'] - accuracy['shuffled']:+.1f}")


if __name__ == "__main__":
    main()
