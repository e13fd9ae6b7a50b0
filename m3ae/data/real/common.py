"""What the real-format readers share: the error type, file checks, counted skips."""

from __future__ import annotations

import warnings
from pathlib import Path

from m3ae.config import ConfigError
from m3ae.textfile import decode_utf8

SPLITS = ("train", "val", "test")


class DataFormatError(ConfigError):
    """A dataset file is missing or does not follow its published format.
    The message names the file (and row) and the expected layout."""


def data_root(cfg, dataset: str) -> Path:
    """<data.root>/<dataset>, checked to exist."""
    if not cfg.data.root:
        raise DataFormatError(f"data.root is not set: dataset {dataset!r} is read from <data.root>/{dataset}/ "
                              "(set data.root=/path/to/datasets; see docs/data.md for the layouts)")
    folder = Path(cfg.data.root).expanduser() / dataset
    if not folder.is_dir():
        raise DataFormatError(f"{dataset}: folder {folder} does not exist (data.root={cfg.data.root}; "
                              "see docs/data.md for the expected layout)")
    return folder


def read_text(path: Path) -> str:
    """A dataset file as UTF-8 text; any other encoding is a DataFormatError naming the file."""
    return decode_utf8(Path(path).read_bytes(), path, DataFormatError)


def require_file(path: Path, layout: str) -> Path:
    if not path.is_file():
        raise DataFormatError(f"missing file {path} (expected layout: {layout})")
    return path


def warn_skipped(what: str, count: int, total: int, example: str) -> None:
    """One warning per reason, with the count, as the paper's code silently drops these rows."""
    if count:
        warnings.warn(f"{what}: skipped {count} of {total} ({example})", stacklevel=3)


def keep_existing_images(name: str, split: str, paths: list[Path], max_missing: int | None = None) -> list[bool]:
    """Which examples' image files exist. Examples whose image is missing are
    skipped with a counted warning (as the paper's code does), or it is an error
    when more than `max_missing` distinct files are missing."""
    found = {p: p.is_file() for p in dict.fromkeys(paths)}  # each distinct file checked once
    exists = [found[p] for p in paths]
    missing = [p for p, ok in zip(paths, exists) if not ok]
    missing_files = [p for p, ok in found.items() if not ok]
    if max_missing is not None and len(missing_files) > max_missing:
        raise DataFormatError(f"{name} {split}: {len(missing_files)} image files are missing (at most "
                              f"{max_missing} tolerated), e.g. {missing_files[0]}")
    if missing:
        warn_skipped(f"{name} {split}: examples whose image file is missing", len(missing), len(paths),
                     f"first: {missing[0]}")
    if len(missing) == len(paths):
        raise DataFormatError(f"{name} {split}: none of the {len(paths)} image files exist, e.g. {missing[0]}")
    return exists
