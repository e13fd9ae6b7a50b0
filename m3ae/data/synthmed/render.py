"""Render synthmed scenes to grayscale images, vectorised over a chunk of scenes.

Coordinates are normalised to [-1, 1] with y pointing down, so any image size
works. A scene is painted in three passes:
  1. anatomy: the region's outline (head, thorax or abdomen), organs and bone
     as soft-edged ellipses, each structure's grey level taken from the
     modality's look-up table (CT: bright bone, dark lungs; MRI T2: bright
     fluid and fat, dark bone; X-ray: flat projection-like levels);
  2. findings: a shape (round, oval, lobulated, irregular) painted at its
     side/position slot with a grey level set by its intensity (hyper bright,
     hypo dark, iso mid-grey but a step off the tissue around it) and a
     kind-specific layout coarse enough to read at 48 px (mass: solid; cyst:
     a ring; nodule: a solid core inside an empty rim; fluid: the lower half,
     a flat level; abscess: solid with a core of the opposite brightness),
     plus an outline contrasting with the surrounding tissue so that every
     finding stays visible (iso findings, hypo findings in the dark lungs);
  3. modality look: CT sharp with light noise in a circular field of view,
     MRI with a smooth bias field and Rician noise, X-ray blurred with
     vignetting and film grain;
  4. acquisition (optional, `scanner_variation` > 0): a per-image contrast,
     brightness and gamma, as scanners, protocols and display windows vary,
     so a modality is told by how its structures relate to each other rather
     than by absolute grey levels.
"""

from __future__ import annotations

import math

import numpy as np

from m3ae.data.synthmed.scene import MAX_FINDINGS, Scenes

# structure -> grey level, per modality (ct, mri, x-ray) and region (brain, chest, abdomen).
# organ1/2/3: brain = parenchyma/ventricles; chest = lungs/heart; abdomen = liver/kidneys/spleen.
_LEVELS = {
    0: {"background": 0.02, "soft": 0.42, "bone": 0.95,
        0: {"organ1": 0.55, "organ2": 0.20}, 1: {"organ1": 0.18, "organ2": 0.52},
        2: {"organ1": 0.60, "organ2": 0.68, "organ3": 0.52}},
    1: {"background": 0.02, "soft": 0.70, "bone": 0.12,
        0: {"organ1": 0.45, "organ2": 0.92}, 1: {"organ1": 0.15, "organ2": 0.40},
        2: {"organ1": 0.32, "organ2": 0.62, "organ3": 0.50}},
    2: {"background": 0.12, "soft": 0.38, "bone": 0.88,
        0: {"organ1": 0.42, "organ2": 0.40}, 1: {"organ1": 0.24, "organ2": 0.60},
        2: {"organ1": 0.46, "organ2": 0.44, "organ3": 0.44}},
}

# (structure, cx, cy, ax, ay, angle) painted in order, per region
_ANATOMY = {
    0: [("soft", 0, 0, 0.80, 0.92, 0), ("bone", 0, 0, 0.75, 0.87, 0), ("organ1", 0, 0, 0.68, 0.80, 0),
        ("organ2", -0.12, -0.02, 0.07, 0.22, 0.25), ("organ2", 0.12, -0.02, 0.07, 0.22, -0.25)],
    1: [("soft", 0, 0.02, 0.95, 0.72, 0), ("organ1", -0.42, -0.02, 0.30, 0.56, 0.05),
        ("organ1", 0.42, -0.02, 0.30, 0.56, -0.05), ("organ2", 0.12, 0.20, 0.24, 0.20, 0.3),
        ("bone", 0, 0.60, 0.10, 0.09, 0)],
    2: [("soft", 0, 0.02, 0.96, 0.76, 0), ("organ1", -0.38, -0.20, 0.42, 0.36, 0.2),
        ("organ3", 0.50, -0.25, 0.20, 0.24, -0.4), ("organ2", -0.34, 0.40, 0.12, 0.18, 0.3),
        ("organ2", 0.34, 0.40, 0.12, 0.18, -0.3), ("bone", 0, 0.52, 0.11, 0.10, 0)],
}

SLOT_X = (0.42, -0.42)  # side left, right (radiological: patient's left on the image right)
SLOT_Y = (-0.46, 0.0, 0.46)  # position upper, middle, lower
RADII = (0.12, 0.17, 0.23)  # size small, medium, large (fraction of the half-width)
TARGET = (0.95, 0.04, 0.50)  # intensity hyper, hypo, iso
ISO_STEP = 0.22  # how far an iso finding sits from the tissue around it
CORE = 0.5  # the core zone of a finding: normalised distance below this
CHUNK = 512  # scenes per vectorised pass; fixed, as the order of noise draws depends on it


def render(scenes: Scenes, size: int, rng: np.random.Generator, scanner_variation: float = 0.0) -> np.ndarray:
    """[N, size, size] uint8 images of `scenes`. Noise (and, with `scanner_variation` > 0,
    each image's contrast, brightness and gamma) comes from `rng`."""
    out = np.empty((len(scenes), size, size), np.uint8)
    for start in range(0, len(scenes), CHUNK):
        part = scenes.select(slice(start, start + CHUNK))
        image = _paint(part, size, rng, True, scanner_variation)
        out[start:start + len(part)] = np.round(image * 255).astype(np.uint8)
    return out


def render_float(scenes: Scenes, size: int, rng: np.random.Generator, findings: bool = True,
                 scanner_variation: float = 0.0) -> np.ndarray:
    """[N, size, size] float32 in [0, 1] before quantisation; `findings=False`
    paints the same scenes without their findings (tests check visibility)."""
    return _paint(scenes, size, rng, findings, scanner_variation)


def _paint(scenes: Scenes, size: int, rng: np.random.Generator, findings: bool,
           scanner_variation: float) -> np.ndarray:
    x, y = _body_frame(scenes.pose, size)  # [B, S, S] each
    image = np.empty_like(x)
    image[:] = np.array([_LEVELS[m]["background"] for m in range(3)], np.float32)[scenes.modality][:, None, None]
    for region in range(3):
        idx = np.flatnonzero(scenes.region == region)
        if len(idx):
            image[idx] = _paint_anatomy(image[idx], x[idx], y[idx], scenes.modality[idx], region, size)
    if findings:
        for k in range(MAX_FINDINGS):
            idx = np.flatnonzero(scenes.count > k)
            if len(idx):
                image[idx] = _paint_finding(image[idx], x[idx], y[idx], scenes.select(idx), k, size)
    for modality, look in enumerate((_look_ct, _look_mri, _look_xray)):
        idx = np.flatnonzero(scenes.modality == modality)
        if len(idx):
            image[idx] = look(image[idx], x[idx], y[idx], scenes.pose[idx], size, rng)
    image = np.clip(image, 0.0, 1.0)
    if scanner_variation > 0:  # no draws at 0, so such images are the same as before the option existed
        image = _acquisition(image, scanner_variation, rng)
    return image


# at scanner_variation = 1: contrast x0.67-1.49 about mid-grey, brightness +-0.15, gamma 0.61-1.65
CONTRAST, BRIGHTNESS, GAMMA = 0.4, 0.15, 0.5


def _acquisition(image, strength, rng):
    """A per-image window (contrast and brightness) and gamma: monotone, so every
    structure and finding keeps its place in the grey-level order of its image."""
    n = len(image)
    contrast = np.exp(strength * CONTRAST * rng.uniform(-1, 1, n)).astype(np.float32)[:, None, None]
    brightness = (strength * BRIGHTNESS * rng.uniform(-1, 1, n)).astype(np.float32)[:, None, None]
    gamma = np.exp(strength * GAMMA * rng.uniform(-1, 1, n)).astype(np.float32)[:, None, None]
    image = np.clip((image - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0)
    return image ** gamma


def _body_frame(pose: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in the body's frame: pose = (scale, dx, dy, rotation) per scene."""
    grid = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1)
    scale, dx, dy, rot = (pose[:, i].astype(np.float32)[:, None, None] for i in range(4))
    dx, dy, rot = dx * 0.04, dy * 0.04, rot * 0.08
    gx, gy = grid[None, None, :] - dx, grid[None, :, None] - dy
    cos, sin = np.cos(rot), np.sin(rot)
    return (cos * gx + sin * gy) / scale, (-sin * gx + cos * gy) / scale


def _ellipse_distance(x, y, cx, cy, ax, ay, angle=0.0):
    """Normalised radius: < 1 inside the ellipse. Parameters broadcast against [B, S, S]
    (Python floats or float32 arrays: numpy float64 scalars would upcast the images)."""
    dx, dy = x - cx, y - cy
    if isinstance(angle, (int, float)):
        if angle == 0:
            return np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2)
        cos, sin = math.cos(angle), math.sin(angle)
    else:
        cos, sin = np.cos(angle), np.sin(angle)
    u, v = dx * cos + dy * sin, dy * cos - dx * sin
    return np.sqrt((u / ax) ** 2 + (v / ay) ** 2)


def _alpha(d, radius, size):
    """Anti-aliased inside mask: 1 inside, 0 outside, a one-pixel ramp on the edge."""
    return np.clip((1.0 - d) * radius * size / 2 + 0.5, 0.0, 1.0)


def _paint_anatomy(image, x, y, modality, region, size):
    for structure, cx, cy, ax, ay, angle in _ANATOMY[region]:
        level = np.array([_lookup(m, region, structure) for m in range(3)], np.float32)[modality][:, None, None]
        alpha = _alpha(_ellipse_distance(x, y, cx, cy, ax, ay, angle), min(ax, ay), size)
        image += alpha * (level - image)
    return image


def _lookup(modality, region, structure):
    table = _LEVELS[modality]
    return table[structure] if structure in table else table[region][structure]


def _paint_finding(image, x, y, s: Scenes, k: int, size: int):
    """Paint finding slot k of every scene in `s` (all have it).

    A kind is a layout of two zones, the core (d < 0.5) and the periphery, that
    stays legible at a few pixels across: mass solid; cyst a ring around a core
    of the surrounding tissue; nodule a solid core inside an empty rim; fluid
    the lower half (a flat fluid level); abscess solid with a core of the
    opposite brightness."""
    col = lambda a: a[:, None, None]  # noqa: E731 - [B] -> [B, 1, 1]
    radius = col(np.asarray(RADII, np.float32)[s.size[:, k]])
    jitter = s.jitter[:, k].astype(np.float32)
    cx = col(np.asarray(SLOT_X, np.float32)[s.side[:, k]] + 0.04 * jitter[:, 0])
    cy = col(np.asarray(SLOT_Y, np.float32)[s.position[:, k]] + 0.04 * jitter[:, 1])
    angle, phase = col(jitter[:, 2]), col(jitter[:, 3])
    d = _shape_distance(x, y, cx, cy, radius, angle, phase, s.shape[:, k])
    target = col(np.asarray(TARGET, np.float32)[s.intensity[:, k]])
    # iso: mid grey, but at least a step off the tissue's own level so that its layout stays legible
    step_off = np.where(image > 0.5, image - ISO_STEP, image + ISO_STEP)
    iso = np.where(np.abs(image - TARGET[2]) < ISO_STEP, step_off, np.float32(TARGET[2]))
    target = np.where(col(s.intensity[:, k]) == 2, iso, target)
    kind = col(s.kind[:, k])
    inside = _alpha(d, radius, size)
    core = _alpha(d / CORE, radius * CORE, size)
    below_level = np.clip((y - cy) * size / 2 + 0.5, 0, 1)
    alpha = np.select([kind == 1, kind == 2, kind == 3], [inside * (1 - core), core, inside * below_level], inside)
    opposite = np.where(target > 0.3, np.float32(TARGET[1]), np.float32(TARGET[0]))
    value = np.where(kind == 4, target + core * (opposite - target), target)
    before = image
    image = image + alpha * (value - image)
    # an outline contrasting with the tissue around it: dark on bright tissue,
    # bright on dark (lungs), so every finding is visible whatever its intensity
    outline = np.clip(1 - np.abs(d - 1.08) * radius * size / 2, 0, 1)
    ring = np.where(before < 0.3, before + 0.3, before * 0.6)
    image = image + 0.8 * outline * (ring - image)
    assert image.dtype == np.float32  # a stray float64 would double the cost
    return image


def _shape_distance(x, y, cx, cy, radius, angle, phase, shape):
    """Normalised distance (< 1 inside) for each scene's shape (round, oval, lobulated,
    irregular); each shape is computed only for the scenes that have it."""
    d = np.empty_like(x)
    for value in range(4):
        idx = np.flatnonzero(shape == value)
        if not len(idx):
            continue
        xs, ys, c_x, c_y, r = x[idx], y[idx], cx[idx], cy[idx], radius[idx]
        if value == 0:  # round
            d[idx] = _ellipse_distance(xs, ys, c_x, c_y, r, r)
        elif value == 1:  # oval, rotated
            d[idx] = _ellipse_distance(xs, ys, c_x, c_y, r * 1.35, r * 0.68, angle[idx])
        elif value == 2:  # lobulated: the union of three overlapping lobes
            lobes = [_ellipse_distance(xs, ys, c_x + 0.42 * r * np.cos(phase[idx] + j * 2.094),
                                       c_y + 0.42 * r * np.sin(phase[idx] + j * 2.094), 0.62 * r, 0.62 * r)
                     for j in range(3)]
            d[idx] = np.minimum(np.minimum(lobes[0], lobes[1]), lobes[2])
        else:  # irregular: the radius wobbles with the angle (spiculated)
            theta = np.arctan2(ys - c_y, xs - c_x)
            d[idx] = _ellipse_distance(xs, ys, c_x, c_y, r, r) / (1 + 0.3 * np.sin(6 * theta + phase[idx]))
    return d


def _noise(rng, shape):
    return rng.standard_normal(shape, dtype=np.float32)


def _look_ct(image, x, y, pose, size, rng):
    """CT: sharp, light noise, dark outside a circular field of view."""
    image = image + 0.02 * _noise(rng, image.shape)
    fov = _alpha(np.sqrt(x ** 2 + y ** 2) / 1.02, 1.0, size)
    return image * fov


def _look_mri(image, x, y, pose, size, rng):
    """MRI: smooth multiplicative bias field and Rician noise (magnitude of complex noise)."""
    bx, by = pose[:, 3, None, None].astype(np.float32), pose[:, 1, None, None].astype(np.float32)
    image = image * (1 + 0.22 * (bx * x + by * y))
    n1, n2 = 0.035 * _noise(rng, image.shape), 0.035 * _noise(rng, image.shape)
    return np.sqrt((image + n1) ** 2 + n2 ** 2)


def _look_xray(image, x, y, pose, size, rng):
    """X-ray: blurred projection look, vignetting, film grain."""
    radius = size // 64  # a projection's blur, kept well under a finding's size
    if radius:
        image = _box_blur(image, radius)
    image = image * (1 - 0.3 * (x ** 2 + y ** 2)) + 0.05
    return image + 0.03 * _noise(rng, image.shape)


def _box_blur(image, radius):
    """Separable box filter over the last two axes (cumulative sums, edge-padded)."""
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (radius + 1, radius)
        c = np.cumsum(np.pad(image, pad, mode="edge"), axis=axis, dtype=np.float32)
        n = image.shape[axis]
        hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        image = (hi - lo) / (2 * radius + 1)
    return image
