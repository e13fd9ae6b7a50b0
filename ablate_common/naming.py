"""Short, readable names for factor settings: MLflow run names, terminal lines, dashboard labels.

A run name must be unique within a study and still tell trials apart when the MLflow runs table
cuts it after some 17 characters, so each factor gets a short alias derived from its dotted path:
the last part ("decoder_depth") unless two factors share it, then the part that tells them apart
("model.mim.mask_ratio" / "model.mlm.mask_ratio" -> "img" / "txt"). A study file's `alias:` map
({path: alias}) wins over the derived names.

    factor_aliases(["model.mim.mask_ratio", "model.mlm.mask_ratio"]) -> {...: "img", ...: "txt"}
    setting_name({"model.mim.mask_ratio": 0.25, "model.mlm.mask_ratio": 0.15}, aliases) -> "img.25-txt.15"
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

# Parts of config paths that name a modality: the reader thinks "image" / "text", not "mim" / "mlm".
READABLE = {"mim": "img", "vision": "img", "mlm": "txt", "text": "txt"}
# Last parts that say nothing on their own: "model.itm.enabled" is about ITM.
GENERIC = {"enabled", "name", "type", "value"}


def factor_aliases(paths: Sequence[str], overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """A short alias per factor path, unique among `paths` (the study's `alias:` map first)."""
    overrides = dict(overrides or {})
    last = Counter(_last(p) for p in paths)
    aliases = {}
    for path in paths:
        if path in overrides:
            aliases[path] = overrides[path]
            continue
        parts = path.split(".")
        if last[_last(path)] == 1:
            aliases[path] = READABLE.get(_last(path), _last(path)) if parts[-1] in GENERIC else _last(path)
            continue
        # the deepest part no other colliding path has at the same depth from the end
        twins = [p.split(".") for p in paths if p != path and _last(p) == _last(path)]
        depth = next((d for d in range(2, len(parts) + 1)
                      if all(len(t) < d or t[-d] != parts[-d] for t in twins)), len(parts))
        aliases[path] = READABLE.get(parts[-depth], parts[-depth])
    taken = Counter(aliases.values())
    # a user alias or a readable name may still collide ("img" for two paths): fall back to the path
    return {p: (a if taken[a] == 1 else p) for p, a in aliases.items()}


def _last(path: str) -> str:
    """The part of a path that names it: the last, or the one before a generic last part
    ("pretrain.enabled" -> "pretrain")."""
    parts = path.split(".")
    return parts[-2] if parts[-1] in GENERIC and len(parts) > 1 else parts[-1]


def format_value(value: object) -> str:
    """0.5753756195702879 -> "0.575", 4.0 -> "4", True -> "true"; sampled floats stay short."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def part(alias: str, value: object) -> str:
    """One factor in a name: "img.25" for a number, "noitm" / "itm" for a switch, "decoder=mlp" else."""
    if isinstance(value, bool):
        return alias if value else f"no{alias}"
    text = format_value(value)
    if isinstance(value, float) and 0 < abs(value) < 1:
        text = text.replace("0.", ".", 1)  # ".75": MLflow's runs table shows ~17 characters of a name
    if isinstance(value, (int, float)) and value >= 0 and len(alias) <= 4:  # "img-1" would read as a range
        return f"{alias}{text}"
    return f"{alias}={text}"


def setting_name(setting: Mapping[str, object], aliases: Mapping[str, str]) -> str:
    """A factor setting as one short string, factors in the study's order ("img.25-txt.15")."""
    return "-".join(part(aliases.get(path, path), value) for path, value in setting.items())


def run_name(setting: Mapping[str, object], seed: int, aliases: Mapping[str, str]) -> str:
    """A trial run's name: the setting, then the seed ("img.25-txt.15-s0")."""
    name = setting_name(setting, aliases)
    return f"{name}-s{seed}" if name else f"trial-s{seed}"
