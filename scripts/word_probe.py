"""Can pre-training learn to read one attribute from the image? MLM on those words only.

    .venv/bin/python scripts/word_probe.py side --workdir /tmp/probe-side                  # laptop, MLM only
    .venv/bin/python scripts/word_probe.py side --workdir /tmp/probe-lr --set pretrain.lr=1e-4
    .venv/bin/python scripts/word_probe.py kind --workdir W --set model.itm.enabled=true

Pre-trains the profile with MLM alone (MIM and ITM off unless --set turns them
on), masking every word of one scene attribute (side, position, kind, ...; the
categories of `m3ae.analysis`) and nothing else, so the whole MLM signal
asks for what only the image can tell. The validation MLM accuracy at each
evaluation is then the accuracy on those words: if it stays at the text's prior
(the majority word), the model cannot learn that readout at these settings,
however the words are weighted in the real objective.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from m3ae.analysis import CATEGORIES, PrintEvals, word_categories

MASKING = "probe_words"  # registered by main() for this process only


def main(argv=None) -> None:
    from m3ae.config import apply_overrides, profile
    from m3ae.data import build_tokenizer
    from m3ae.registry import TEXT_MASKING
    from m3ae.train import pretrain

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("category", choices=CATEGORIES)
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--workdir", type=Path, required=True, help="checkpoint and cache go here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    base = apply_overrides(profile(args.profile), {"model.mim.enabled": False, "model.itm.enabled": False,
                                                   "threads": args.threads})
    base = apply_overrides(base, args.overrides)
    cache = args.workdir / "cache"
    tokenizer = build_tokenizer(base, cache)
    ids = sorted(i for i, name in word_categories(tokenizer).items() if name == args.category)
    print(f"{args.category}: masking only {tokenizer.convert_ids_to_tokens(ids)}", flush=True)
    wanted = torch.tensor(ids)

    @TEXT_MASKING.register(MASKING)
    def probe_words(input_ids, attention_mask, word_ids, vocab, ratio):
        return torch.isin(input_ids, wanted.to(input_ids.device)) & attention_mask.bool()

    cfg = apply_overrides(base, {"model.mlm.masking": MASKING})
    result = pretrain(cfg, args.workdir / "pretrain", cache, [PrintEvals(f"{args.category} probe")])
    print(f"validation accuracy on the {args.category} words: {result.metrics['val_mlm_acc']:.3f}")


if __name__ == "__main__":
    main()
