"""Paths inside the work directory built from names a user or a file chose (study names,
trial ids, search names): they must never lead outside it.

    within(workdir, "trials", study_name, trial_id)  ->  <workdir>/trials/<study>/<trial>

Study and search names are already checked by their schemas (letters, digits, `_`, `.`, `-`,
not starting with a dot); this is the second fence, where the path is made.
"""

from __future__ import annotations

from pathlib import Path


class UnsafePath(ValueError):
    """A name would put a file outside its folder."""


def within(root: Path, *parts: str) -> Path:
    """`root / part / ...`, refusing parts that are empty, absolute, `.`/`..`, contain a
    separator or a NUL, or resolve (through symlinks too) outside `root`."""
    root = Path(root).absolute()
    for part in parts:
        text = str(part)
        if not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text:
            raise UnsafePath(f"{text!r} cannot name a file or folder under {root}: expected a plain name "
                             "(letters, digits, '_', '.', '-'), no path separators or '..'")
    path = root.joinpath(*map(str, parts))
    if not path.resolve().is_relative_to(root.resolve()):
        raise UnsafePath(f"{path} resolves outside {root}")
    return path
