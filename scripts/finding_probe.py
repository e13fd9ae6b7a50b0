"""Can the profile's image encoder learn synthmed findings from pixels at all? A supervised probe.

    .venv/bin/python scripts/finding_probe.py --cache RUN/cache                 # laptop profile, 3,000 steps
    .venv/bin/python scripts/finding_probe.py --set model.vision.patch_size=4 --steps 1500
    .venv/bin/python scripts/finding_probe.py --checkpoint RUN/pretrain/checkpoint.pt --frozen --cache RUN/cache
    .venv/bin/python scripts/finding_probe.py --checkpoint CKPT --steps 2000 --save ORACLE.pt --cache RUN/cache

Trains the profile's vision encoder from scratch, with a linear read-out of all
its tokens, on the synth_pairs training images. For each finding slot
(side x position, 6) it predicts the finding's kind, or that the slot is
empty, and it predicts the size of each present finding. No text is involved.
If this direct supervision cannot locate findings in a budget like
pre-training's, MLM and ITM cannot ground the finding words either: the image
is the bottleneck, not the cross-modal objectives.

With --checkpoint the encoder starts from a pre-training checkpoint's vision
encoder; with --frozen as well, only the read-out trains: a linear probe of
what pre-training put into the image features (--frozen alone probes a
randomly initialised encoder: the control).

With --save (and --checkpoint, not --frozen) the supervised encoder replaces
the checkpoint's vision encoder in a copy written to that path: an "oracle"
pre-training whose image features know the findings. Fine-tuning from it
(`vqa_by_question.py --checkpoint ORACLE.pt`) bounds what better image features
alone can give VQA when the fusion never learned to read them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from m3ae.data.synthmed.scene import KINDS, MAX_FINDINGS, POSITIONS, SIDES, SIZES

SLOTS = len(SIDES) * len(POSITIONS)  # where a finding can sit: slot = side * len(POSITIONS) + position
PREFIX = "vision_encoder."  # the vision encoder's keys in a checkpoint's model


def slot_targets(scenes) -> tuple[np.ndarray, np.ndarray]:
    """[N, SLOTS] kind + 1 per slot (0 = empty) and [N, SLOTS] size per slot (-1 = empty)."""
    n = len(scenes)
    kind, size = np.zeros((n, SLOTS), np.int64), np.full((n, SLOTS), -1, np.int64)
    for k in range(MAX_FINDINGS):
        idx = np.flatnonzero(scenes.count > k)
        slot = scenes.side[idx, k] * len(POSITIONS) + scenes.position[idx, k]
        kind[idx, slot], size[idx, slot] = scenes.kind[idx, k] + 1, scenes.size[idx, k]
    return kind, size


def load(split: str, cfg, cache: Path):
    from m3ae.data import normalize
    from m3ae.data.synthmed import load_split

    data = load_split("synth_pairs", split, cfg.data, cfg.model.vision.image_size, cache)
    images = normalize(torch.from_numpy(np.array(data.images)).float().div(255)[:, None].expand(-1, 3, -1, -1))
    kind, size = slot_targets(data.scenes)
    return images, torch.from_numpy(kind), torch.from_numpy(size)


class Probe(torch.nn.Module):
    """The vision encoder with a linear read-out of all its tokens: per finding slot, the
    kind ("empty" or one of KINDS) and the size."""

    def __init__(self, encoder: torch.nn.Module, tokens: int, width: int):
        super().__init__()
        self.encoder, self.kinds = encoder, 1 + len(KINDS)
        self.readout = torch.nn.Linear(tokens * width, SLOTS * (self.kinds + len(SIZES)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> kind logits [B, SLOTS, kinds], size logits [B, SLOTS, len(SIZES)]."""
        kind, size = self.readout(self.encoder(x).flatten(1)).split([SLOTS * self.kinds, SLOTS * len(SIZES)], dim=1)
        return kind.view(-1, SLOTS, self.kinds), size.view(-1, SLOTS, len(SIZES))


def build_probe(cfg, checkpoint: dict | None, frozen: bool, sample: torch.Tensor) -> Probe:
    """The profile's vision encoder (from a pre-training checkpoint's, or fresh) under a read-out;
    `frozen`: only the read-out trains."""
    from m3ae.registry import VISION_ENCODERS

    encoder = VISION_ENCODERS.get(cfg.model.vision.encoder)(cfg.model.vision)
    if checkpoint is not None:
        encoder.load_state_dict({k[len(PREFIX):]: v for k, v in checkpoint["model"].items() if k.startswith(PREFIX)})
    encoder.requires_grad_(not frozen)
    with torch.no_grad():
        tokens = encoder(sample[:2]).shape  # [2, L, D]
    return Probe(encoder, tokens[1], tokens[2])


def train(probe: Probe, cfg, steps: int, frozen: bool, train_set, val_set) -> None:
    """AdamW on the read-out (and the encoder unless frozen); validation every 500 steps and at the end."""
    train_x, train_kind, train_size = train_set
    params = list(probe.readout.parameters()) + ([] if frozen else list(probe.encoder.parameters()))
    optimizer = torch.optim.AdamW(params, lr=cfg.pretrain.lr, weight_decay=cfg.pretrain.weight_decay)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        i = torch.randint(0, len(train_x), (cfg.pretrain.batch_size,))
        kind, size = probe(train_x[i])
        present = train_size[i] >= 0
        loss = F.cross_entropy(kind.flatten(0, 1), train_kind[i].flatten()) + F.cross_entropy(
            size[present], train_size[i][present])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 500 == 0 or step == steps:
            scores = validate(probe, *val_set)
            print(f"step {step} ({time.perf_counter() - start:.0f} s): {scores}", flush=True)


def validate(probe: Probe, val_x, val_kind, val_size) -> str:
    """Accuracy of slot occupancy, of the kind and of the size of present findings."""
    probe.encoder.eval()
    with torch.no_grad():
        kind, size = probe(val_x)
    probe.encoder.train()
    occupied, guess = val_kind > 0, kind.argmax(-1)
    return (f"slot empty or not {((guess > 0) == occupied).float().mean():.3f}, kind of a present finding "
            f"{(guess[occupied] == val_kind[occupied]).float().mean():.3f}, size "
            f"{(size.argmax(-1)[occupied] == val_size[occupied]).float().mean():.3f}")


def main(argv=None) -> None:
    from m3ae.config import apply_overrides, profile
    from m3ae.data.synthmed import build_task
    from m3ae.train.checkpoint import load_checkpoint, write_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--checkpoint", type=Path, help="start the encoder from this pre-training checkpoint")
    parser.add_argument("--frozen", action="store_true", help="train only the read-out")
    parser.add_argument("--cache", type=Path, default=Path("ablate-runs/cache"), help="data cache")
    parser.add_argument("--save", type=Path, metavar="OUT",
                        help="write --checkpoint with its vision encoder replaced by the one trained here")
    args = parser.parse_args(argv)
    if args.save and (args.checkpoint is None or args.frozen):
        parser.error("--save needs --checkpoint (the checkpoint to copy) and a trained encoder (no --frozen)")
    cfg = apply_overrides(profile(args.profile), args.overrides)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads or 1)

    build_task("synth_pairs", cfg.data, cfg.model.vision.image_size, args.cache)
    train_set, val_set = load("train", cfg, args.cache), load("val", cfg, args.cache)
    checkpoint = load_checkpoint(args.checkpoint) if args.checkpoint else None
    probe = build_probe(cfg, checkpoint, args.frozen, val_set[0])
    print(f"{len(train_set[0])} training images; chance: slot empty or not {1 - (val_set[1] > 0).float().mean():.2f} "
          f"(always 'empty'), kind {1 / len(KINDS):.2f}, size {1 / len(SIZES):.2f}")
    train(probe, cfg, args.steps, args.frozen, train_set, val_set)
    if args.save:
        checkpoint["model"].update({PREFIX + k: v for k, v in probe.encoder.state_dict().items()})
        write_checkpoint(args.save, checkpoint)
        print(f"wrote {args.save}: {args.checkpoint} with the probe-trained vision encoder")


if __name__ == "__main__":
    main()
