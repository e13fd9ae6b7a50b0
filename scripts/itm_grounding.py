"""Does a pre-trained model's ITM check where the findings are? Matched reports vs the same reports mirrored.

    .venv/bin/python scripts/itm_grounding.py RUN/pretrain/checkpoint.pt --cache RUN/cache

Scores every validation pair with the ITM head three ways: with its own report
(should be "matched"), with another pair's image (the paper's random negative),
and with its own image but the report's location words swapped, left <-> right
or upper <-> lower, in every sentence. A swapped report describes the same
findings at other places, so only a model that locates them calls it
mismatched; one that checks modality, region and which findings are named
calls it matched. Pairs whose report has none of a swap's words are left out
of that row.
"""

from __future__ import annotations

import argparse

import torch

from m3ae.analysis import checkpoint_arguments, load_probe

SWAPS = {"side": ("left", "right"), "position": ("upper", "lower")}


def swap_words(input_ids: torch.Tensor, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every token a becomes b and every b becomes a. -> (ids [B, T], rows that changed [B] bool)."""
    swapped = torch.where(input_ids == a, b, torch.where(input_ids == b, a, input_ids))
    return swapped, (swapped != input_ids).any(dim=1)


def main(argv=None) -> None:
    from m3ae.data import make_loader

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    checkpoint_arguments(parser)
    args = parser.parse_args(argv)
    probe = load_probe(args.checkpoint, args.profile, args.overrides, args.cache)
    cfg, pairs, model = probe.cfg, probe.pairs, probe.model
    vocab = probe.tokenizer.get_vocab()

    def says_matched(images, input_ids, attention_mask) -> torch.Tensor:
        return model.itm_head(model.encode(images, input_ids, attention_mask).pooled).argmax(dim=-1) == 1

    rows = {"own report (matched)": [], "another image (random negative)": [],
            **{f"{name} swapped ({a} <-> {b})": [] for name, (a, b) in SWAPS.items()}}
    with torch.no_grad():
        for batch in make_loader(pairs, 64, train=False, cfg=cfg, seed=0):
            ids, mask = batch.input_ids, batch.attention_mask
            rows["own report (matched)"] += says_matched(batch.images, ids, mask).tolist()
            rows["another image (random negative)"] += (~says_matched(batch.images.roll(1, dims=0), ids, mask)).tolist()
            for name, (a, b) in SWAPS.items():
                swapped, changed = swap_words(ids, vocab[a], vocab[b])
                if changed.any():
                    called = ~says_matched(batch.images[changed], swapped[changed], mask[changed])
                    rows[f"{name} swapped ({a} <-> {b})"] += called.tolist()
    print(f"ITM on {len(pairs)} validation pairs of {args.checkpoint}")
    print("| report shown with | n | ITM is right (%) |\n|---|---|---|")
    for name, right in rows.items():
        if right:
            print(f"| {name} | {len(right)} | {100 * sum(right) / len(right):.1f} |")


if __name__ == "__main__":
    main()
