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

import torch

from m3ae.analysis import CATEGORIES, checkpoint_arguments, load_probe, word_categories


def main(argv=None) -> None:
    from m3ae.data import make_loader

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    checkpoint_arguments(parser)
    args = parser.parse_args(argv)
    probe = load_probe(args.checkpoint, args.profile, args.overrides, args.cache)
    cfg, pairs, model = probe.cfg, probe.pairs, probe.model
    categories = word_categories(probe.tokenizer)
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


if __name__ == "__main__":
    main()
