"""What the analyses under scripts/ share: a pre-training checkpoint with the validation
pairs to probe it on, the scene attribute each report word names, and a callback that
prints every evaluation.

    parser = argparse.ArgumentParser(); checkpoint_arguments(parser); args = parser.parse_args()
    probe = load_probe(args.checkpoint, args.profile, args.overrides, args.cache)
    word_categories(probe.tokenizer)      # token id -> "modality", "region", "kind", ..., "position"
    pretrain(cfg, out_dir, cache_dir, [PrintEvals("my probe")])
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m3ae.config import Config
from m3ae.train.callbacks import Callback

# The scene attributes a masked report word can name (the rest are the report's other words).
CATEGORIES = ("modality", "region", "kind", "size", "shape", "intensity", "side", "position")


@dataclass(frozen=True)
class Probe:
    """A pre-training checkpoint ready to be probed on the synth_pairs validation split."""

    cfg: Config
    tokenizer: Any  # a transformers tokenizer
    pairs: Any  # the validation synth_pairs dataset
    model: Any  # the checkpoint's M3AE model, in eval mode


def checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """CHECKPOINT, --profile, --set PATH=VALUE (repeatable), --cache: the command line of a probe."""
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--cache", type=Path, default=Path("ablate-runs/cache"), help="data and tokenizer cache")


def load_probe(checkpoint: Path, profile_name: str = "laptop", overrides: Sequence[str] = (),
               cache: Path = Path("ablate-runs/cache")) -> Probe:
    """The profile's config with `overrides` (they must match the checkpoint's model), its
    tokenizer and validation synth_pairs from `cache`, and the checkpoint's weights."""
    from m3ae.config import apply_overrides, profile
    from m3ae.data import build_dataset, build_tokenizer, text_vocab
    from m3ae.model import build_model
    from m3ae.train.checkpoint import load_checkpoint, load_model_weights

    cfg = apply_overrides(profile(profile_name), list(overrides))
    tokenizer = build_tokenizer(cfg, cache)
    pairs = build_dataset("synth_pairs", "val", cfg, tokenizer, cache)
    model = build_model(cfg.model, text_vocab(tokenizer))
    load_model_weights(model, load_checkpoint(checkpoint), cfg, source=str(checkpoint))
    return Probe(cfg, tokenizer, pairs, model.eval())


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


class PrintEvals(Callback):
    """One line per evaluation, so a long run shows where it is."""

    def __init__(self, name: str):
        self.name, self.start = name, time.perf_counter()

    def on_eval(self, stage: str, step: int, metrics: Mapping[str, float]) -> None:
        shown = ", ".join(f"{k}={v:.3g}" for k, v in metrics.items())
        print(f"  [{self.name} {stage} step {step}, {time.perf_counter() - self.start:.0f} s] {shown}", flush=True)
