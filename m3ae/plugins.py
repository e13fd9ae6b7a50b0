"""Components from outside the package: plugin modules and the `m3ae.components` entry points.

A plugin is a Python module that registers components with the same decorators
the built-ins use (`@IMAGE_MASKING.register("grid")`). It reaches the registries
in one of two ways:

    plugins: [my_masking]                 # a study or search file (ablate train --plugin my_masking)
    [project.entry-points."m3ae.components"]
    my_masking = "my_masking"             # an installed distribution; loaded when a name is not built in

`load(names)` imports plugin modules; `identity(module)` names the code a module
is (its distribution's version and a hash of its files), and `used_by(view)`
the plugin code a config view names, which the cache keys and MLflow record so
two implementations under one name never share a pre-training.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Iterable

from m3ae.config import ConfigError

ENTRY_POINT_GROUP = "m3ae.components"
_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class PluginError(ConfigError):
    """A plugin module does not import, or an entry point fails to load (a usage error: exit 2)."""


_loaded: list[str] = []  # plugin modules this process imported through `load`, in order
_entry_points_loaded = False
_identities: dict[str, str] = {}


def load(names: Iterable[str], search_paths: Iterable[str | Path] = ()) -> list[ModuleType]:
    """Import plugin modules by name. A module not on sys.path is also looked for in
    `search_paths` (a study file's folder); that folder then joins sys.path."""
    modules = []
    for name in names:
        if not isinstance(name, str) or not _MODULE_NAME.match(name):
            raise PluginError(f"plugin {name!r}: expected an importable module name such as my_plugin or pkg.module")
        modules.append(_import(name, [Path(p) for p in search_paths]))
        if name not in _loaded:
            _loaded.append(name)
    return modules


def _import(name: str, search_paths: list[Path]) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        top = name.split(".")[0]
        if error.name not in (name, top) and not name.startswith(f"{error.name}."):
            raise PluginError(f"plugin {name!r} failed to import: {error}") from None  # one of its own imports
        for folder in search_paths:
            if (folder / top).is_dir() or (folder / f"{top}.py").is_file():
                sys.path.append(str(folder.absolute()))
                return _import(name, [])
        where = f" or in {', '.join(str(p) for p in search_paths)}" if search_paths else ""
        raise PluginError(f"plugin {name!r}: no module of that name on the Python path{where}; install it, "
                          f"add its folder to PYTHONPATH, or put it next to the study file") from None
    except PluginError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of a user's module is reported by name
        raise PluginError(f"plugin {name!r} failed to import: {type(error).__name__}: {error}") from None


def loaded() -> list[str]:
    """Plugin modules imported in this process through `load` (what a worker it starts needs)."""
    return list(_loaded)


def load_entry_points() -> None:
    """Import every module the `m3ae.components` entry points name (once per process)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as error:  # noqa: BLE001 - a broken plugin is named, not a stack trace
            source = f" (distribution {point.dist.name})" if point.dist else ""
            raise PluginError(f"entry point {point.name} = {point.value}{source} in group {ENTRY_POINT_GROUP!r} "
                              f"failed to load: {type(error).__name__}: {error}") from None


# --------------------------------------------------------------------------- identity


def source(module_name: str) -> Path | None:
    """The file or package folder of a module's top-level package (what Ray ships to nodes)."""
    top = sys.modules.get(module_name.split(".")[0]) or importlib.import_module(module_name.split(".")[0])
    paths = list(getattr(top, "__path__", []))
    if len(paths) == 1:
        return Path(paths[0])
    file = getattr(top, "__file__", None)
    return Path(file) if file else None


def identity(module_name: str) -> str:
    """'<version>+sha256:<hash>' of a module's top-level package: the installed distribution's
    version (if any) and a hash of its Python files, so an edited plugin is new code."""
    top = module_name.split(".")[0]
    if top not in _identities:
        versions = sorted({metadata.version(d) for d in metadata.packages_distributions().get(top, [])})
        _identities[top] = "+".join([*versions, file_hash(top)])
    return _identities[top]


def file_hash(module_name: str) -> str:
    """'sha256:<hash>' of the Python files of a module's top-level package (names and contents)."""
    where = source(module_name)
    if where is None:
        return "sha256:unknown"
    files = sorted(where.rglob("*.py")) if where.is_dir() else [where]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(where) if where.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return f"sha256:{digest.hexdigest()[:12]}"


def used_by(view) -> dict[str, str]:
    """{top-level module: identity} of the plugin code behind the component names in a config
    (or a part of one, e.g. the pre-train view)."""
    return {top: identity(top) for top in sorted({m.split(".")[0] for m in modules_named(view)})}


def modules_named(view) -> list[str]:
    """The modules outside m3ae that registered the components a config, or any nested
    structure of values (a study's factors, a search's space), names: every string value
    that is a registered name. Entry-point plugins a study uses are among them."""
    from m3ae import registry

    names = set()
    for value in _leaves(view):
        if isinstance(value, str):
            names.update(value.split("+"))  # data.pretrain joins datasets with "+"
    found = set()
    for reg in registry.all_registries():
        for name in names:
            origin = reg.origin(name)
            if origin and origin.split(".")[0] != "m3ae":
                found.add(origin)
    return sorted(found)


def _leaves(value):
    if isinstance(value, dict):
        for child in value.values():
            yield from _leaves(child)
    elif isinstance(value, (list, tuple)):
        for child in value:
            yield from _leaves(child)
    else:
        yield value
