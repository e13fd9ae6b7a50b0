"""Name -> factory registries for every pluggable component.

One `Registry` per component kind. A component registers itself with a
decorator where it is defined; config selects it by name:

    @IMAGE_MASKING.register("block")
    def block_masking(...): ...

    IMAGE_MASKING.get("block")        # the factory
    IMAGE_MASKING.names()             # ["block", "random"]

An unknown name raises `UnknownComponentError` listing the valid names and the
closest one. Each registry declares its built-in names and the module that
registers them (the table at the bottom, held to agree with the modules by a
test), so checking a name imports nothing: a config is checked without torch,
and `get` imports the module that provides a name when it is first asked for.
A name that no built-in provides first loads the plugins installed under the
`m3ae.components` entry point group (`m3ae.plugins`), as catalogue does.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from typing import Callable, Generic, TypeVar

F = TypeVar("F", bound=Callable)

class UnknownComponentError(KeyError, ValueError):
    """A config named a component that no registry entry provides."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


def closest(name: str, candidates) -> str | None:
    """The candidate most similar to `name`, or None when nothing is close."""
    matches = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


class Registry(Generic[F]):
    def __init__(self, kind: str, module: str, builtins: tuple[str, ...]):
        """`builtins`: the names that `module` registers when imported."""
        self.kind = kind
        self.module = module
        self.builtins = builtins
        self._factories: dict[str, F] = {}
        self._origins: dict[str, str | None] = {}  # name -> the module that registered it

    def register(self, name: str) -> Callable[[F], F]:
        # who registers it and where the factory is defined: a plugin may register a built-in
        # function under a new name, or its own factory through a helper of ours
        modules = [sys._getframe(1).f_globals.get("__name__")]

        def decorator(factory: F) -> F:
            if name in self.builtins and modules[0] != self.module:
                importlib.import_module(self.module)  # the built-in first: another factory is a clash
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            found = [m for m in (*modules, getattr(factory, "__module__", None)) if m]
            self._origins[name] = next((m for m in found if m.split(".")[0] != "m3ae"), found[0] if found else None)
            return factory

        return decorator

    def get(self, name: str) -> F:
        if name not in self:
            raise UnknownComponentError(self.unknown_message(name))
        if name not in self._factories:  # a built-in whose module is not imported yet
            importlib.import_module(self.module)
        return self._factories[name]

    def origin(self, name: str) -> str | None:
        """The module that registered a component (None: not registered)."""
        if name not in self:
            return None
        return self._origins.get(name, self.module)

    def unknown_message(self, name: str) -> str:
        names = self.names()  # plugins included
        hint = closest(name, names)
        suggestion = f"; did you mean {hint!r}?" if hint else ""
        return f"unknown {self.kind} {name!r}: expected one of {names}{suggestion}"

    def names(self) -> list[str]:
        _load_plugins()
        return sorted({*self.builtins, *self._factories})

    def __contains__(self, name: str) -> bool:
        if name in self.builtins or name in self._factories:
            return True
        _load_plugins()  # an installed plugin may provide it
        return name in self._factories

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted({*self.builtins, *self._factories})})"


def ensure_loaded() -> None:
    """Import every module that registers built-in components, so each registry holds all
    its factories (what a test that snapshots the registries needs)."""
    for reg in all_registries():
        importlib.import_module(reg.module)


def _load_plugins() -> None:
    from m3ae.plugins import load_entry_points

    load_entry_points()


def all_registries() -> list[Registry]:
    """Every component registry of this module."""
    return [value for value in globals().values() if isinstance(value, Registry)]


# The component kinds: each with the module that registers its built-ins, and their names.
VISION_ENCODERS: Registry = Registry("vision encoder", "m3ae.model.encoders", ("timm",))
TEXT_ENCODERS: Registry = Registry("text encoder", "m3ae.model.encoders", ("bert", "roberta"))
FUSION: Registry = Registry("fusion", "m3ae.model.fusion", ("coattention",))
IMAGE_MASKING: Registry = Registry("image masking", "m3ae.model.masking", ("random", "block"))
TEXT_MASKING: Registry = Registry("text masking", "m3ae.model.masking", ("token", "whole_word", "span"))
VISION_DECODERS: Registry = Registry("vision decoder", "m3ae.model.decoders", ("transformer", "mlp"))
LANGUAGE_DECODERS: Registry = Registry("language decoder", "m3ae.model.decoders", ("mlp", "transformer"))
OBJECTIVES: Registry = Registry("pre-training objective", "m3ae.model.objectives", ("mim", "mlm", "itm"))
ITM_NEGATIVES: Registry = Registry("ITM negative sampler", "m3ae.model.objectives", ("random", "hard", "text_overlap"))
TASKS: Registry = Registry("fine-tuning task", "m3ae.tasks", (
    "synth_vqa", "vqa_rad", "slake", "medvqa_2019", "synth_cls", "melinda", "synth_irtr", "roco"))
DATASETS: Registry = Registry("dataset", "m3ae.data.builders", (
    "synth_pairs", "synth_vqa", "synth_cls", "synth_irtr", "roco", "medicat", "vqa_rad", "slake", "medvqa_2019",
    "melinda"))
