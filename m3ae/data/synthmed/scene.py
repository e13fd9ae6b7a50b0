"""The attributes of synthmed scenes, sampled in bulk with numpy.

A scene is one radiology-like image: a modality, a body region and 0-3
findings. Each finding has a kind, size, side, position, intensity and shape;
the kinds within a scene are distinct and so are the (side, position) slots,
so "where is the cyst?" has exactly one answer. Images, reports and questions
are all written from these arrays, nothing else.

Sides follow the radiological convention: the patient's left is on the right
of the image.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

MODALITIES = ("ct", "mri", "x-ray")
REGIONS = ("brain", "chest", "abdomen")
KINDS = ("mass", "cyst", "nodule", "fluid", "abscess")
SIZES = ("small", "medium", "large")
SIDES = ("left", "right")
POSITIONS = ("upper", "middle", "lower")
INTENSITIES = ("hyper", "hypo", "iso")
SHAPES = ("round", "oval", "lobulated", "irregular")

MAX_FINDINGS = 3
COUNT_PROBS = (0.2, 0.35, 0.3, 0.15)  # P(0..3 findings)
FINDING_ATTRS = ("kind", "size", "side", "position", "intensity", "shape")


@dataclass
class Scenes:
    """N scenes as arrays. Per-finding arrays are [N, MAX_FINDINGS]; slot k is
    used when k < count. The jitter fields only move pixels, not meaning."""

    modality: np.ndarray  # [N] int
    region: np.ndarray  # [N] int
    count: np.ndarray  # [N] int, 0..MAX_FINDINGS
    kind: np.ndarray  # [N, F] int
    size: np.ndarray
    side: np.ndarray
    position: np.ndarray
    intensity: np.ndarray
    shape: np.ndarray
    jitter: np.ndarray  # [N, F, 4] float: finding dx, dy, angle, texture phase
    pose: np.ndarray  # [N, 4] float: body scale, dx, dy, rotation

    def __len__(self) -> int:
        return len(self.modality)

    def present(self) -> np.ndarray:
        """[N, F] bool: which finding slots are used."""
        return np.arange(MAX_FINDINGS)[None, :] < self.count[:, None]

    def select(self, index) -> "Scenes":
        return Scenes(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays) -> "Scenes":
        return cls(**{f.name: np.asarray(arrays[f.name]) for f in fields(cls)})

    @classmethod
    def concat(cls, parts: list["Scenes"]) -> "Scenes":
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def finding(self, i: int, k: int) -> dict[str, str]:
        """The words of finding k of scene i, e.g. {"kind": "cyst", "side": "left", ...}."""
        vocab = dict(zip(FINDING_ATTRS, (KINDS, SIZES, SIDES, POSITIONS, INTENSITIES, SHAPES)))
        return {name: vocab[name][int(getattr(self, name)[i, k])] for name in FINDING_ATTRS}

    def findings(self, i: int) -> list[dict[str, str]]:
        return [self.finding(i, k) for k in range(int(self.count[i]))]


def sample_scenes(n: int, rng: np.random.Generator) -> Scenes:
    """n independent scenes: every attribute uniform (counts from COUNT_PROBS)."""
    f = MAX_FINDINGS
    # distinct kinds and distinct (side, position) slots: the first columns of random permutations
    kinds = np.argsort(rng.random((n, len(KINDS))), axis=1)[:, :f]
    slots = np.argsort(rng.random((n, len(SIDES) * len(POSITIONS))), axis=1)[:, :f]
    return Scenes(
        modality=rng.integers(0, len(MODALITIES), n),
        region=rng.integers(0, len(REGIONS), n),
        count=rng.choice(f + 1, size=n, p=COUNT_PROBS),
        kind=kinds,
        size=rng.integers(0, len(SIZES), (n, f)),
        side=slots // len(POSITIONS),
        position=slots % len(POSITIONS),
        intensity=rng.integers(0, len(INTENSITIES), (n, f)),
        shape=rng.integers(0, len(SHAPES), (n, f)),
        jitter=np.concatenate([rng.uniform(-1, 1, (n, f, 2)), rng.uniform(0, np.pi, (n, f, 1)),
                               rng.uniform(0, 2 * np.pi, (n, f, 1))], axis=2),
        pose=np.stack([rng.uniform(0.9, 1.05, n), rng.uniform(-1, 1, n), rng.uniform(-1, 1, n),
                       rng.uniform(-1, 1, n)], axis=1),
    )


def primary_finding(scenes: Scenes) -> np.ndarray:
    """[N] index into ("normal",) + KINDS: the largest finding's kind (ties: the
    kind listed first in KINDS, a fixed clinical priority); 0 = normal."""
    present = scenes.present()
    # score: size dominates, then priority (lower kind index wins)
    score = np.where(present, scenes.size * 10 + (len(KINDS) - scenes.kind), -1)
    best = np.argmax(score, axis=1)
    kind = np.take_along_axis(scenes.kind, best[:, None], axis=1)[:, 0]
    return np.where(scenes.count > 0, kind + 1, 0)
