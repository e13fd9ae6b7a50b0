"""Which synth_vqa questions does a model answer? Fine-tune once, then score the test split per question family.

    .venv/bin/python scripts/vqa_by_question.py --checkpoint RUN/pretrain/checkpoint.pt --set finetune.epochs=10
    .venv/bin/python scripts/vqa_by_question.py --set data.synth_vqa_images=1500    # from scratch, more labels

Families follow the question templates of m3ae/data/synthmed/text.py: global
ones (modality, organ) need only the whole image; the others need the model to
find the lesions (normal?, count, where, which side, kind at a location,
size, shape, intensity, yes/no about a kind or an attribute). Chance differs per
family (e.g. 1/6 for "where", 1/2 for yes/no), so compare runs, not families.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

import torch

FAMILIES = (  # first match wins; patterns over the lower-cased question
    ("where", r"^where"), ("which side", r"side is|which side"),
    ("kind at location", r"abnormality in|lesion is seen in"), ("size", r"size|how large"), ("shape", r"shape"),
    ("intensity", r"signal|density of"), ("count", r"how many"),
    ("modality", r"modality|taken with|is this an? (ct|mri|x-ray)"),
    ("organ", r"organ|body part|image of the|show the"), ("normal?", r"normal|abnormal"),
    ("multiple?", r"more than one|multiple"), ("kind at location?", r"in the .* (lung|hemisphere|abdomen)\?"),
    ("kind?", r"^is there an? |does the image show|seen\?$"), ("attribute?", r"^is the "),
)


def family(question: str) -> str:
    q = question.lower()
    return next((name for name, pattern in FAMILIES if re.search(pattern, q)), "other")


def main(argv=None) -> None:
    from m3ae.config import apply_overrides, profile
    from m3ae.data import build_dataset, build_tokenizer, make_loader
    from m3ae.train import finetune

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--checkpoint", type=Path, help="a pre-training checkpoint (default: from scratch)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--workdir", type=Path, default=Path("ablate-runs/vqa_by_question"))
    args = parser.parse_args(argv)
    cfg = apply_overrides(profile(args.profile), args.overrides)

    result = finetune(cfg, "synth_vqa", args.checkpoint, args.workdir / "synth_vqa", args.workdir / "cache",
                      keep_model=True)
    net = result.model  # the best validation epoch's model, the one scored on the test split
    dataset = build_dataset("synth_vqa", "test", cfg, build_tokenizer(cfg, args.workdir / "cache"),
                            args.workdir / "cache")

    net.eval()
    hits = []
    with torch.no_grad():
        for batch in make_loader(dataset, 64, train=False, cfg=cfg, seed=0):
            answer = net.head(net.backbone.encode(batch.images, batch.input_ids, batch.attention_mask).pooled).argmax(1)
            hits += (batch.labels.gather(1, answer[:, None])[:, 0] > 0).tolist()
    assert len(hits) == len(dataset), "the evaluation loader must keep every example, in order"
    by_family = collections.defaultdict(list)
    for text, hit in zip(dataset.texts, hits):
        by_family[family(text)].append(hit)
    print("test: " + ", ".join(f"{k} {v:.1f}" for k, v in result.metrics.items()))
    print("| question family | n | accuracy % |\n|---|---|---|")
    for name, _ in FAMILIES:
        if by_family.get(name):
            values = by_family[name]
            print(f"| {name} | {len(values)} | {100 * sum(values) / len(values):.1f} |")


if __name__ == "__main__":
    main()
