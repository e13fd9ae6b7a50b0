"""Spec files (studies and searches): their YAML with a line number for every key, and their
problems collected as `file:line: key: what` and raised together as one `SpecError`.
"""

from __future__ import annotations

import difflib
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

# Bigger YAML node trees are refused before anything walks them (an alias bomb: a few
# lines of `&a [*b, *b, ...]` expand to billions of nodes).
MAX_YAML_NODES = 100_000

class SpecError(ValueError):
    """A study file is wrong. The message lists each problem as `file:line: key: what`."""


# --------------------------------------------------------------------------- YAML with line numbers


class LineLoader(yaml.SafeLoader):
    """SafeLoader that keeps the composed node tree, so keys can be traced to lines."""


def load_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """Parse safely; return the data and {key path tuple: 1-based line}."""
    loader = LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_size(node, source)  # before anything walks or constructs it
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        raise SpecError(f"{source}: not valid YAML: {error}") from None
    except RecursionError:
        raise SpecError(f"{source}: the YAML is nested too deeply to read (a study file nests a few levels)") from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}

    def walk(n, path: tuple) -> None:
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                child = path + (key_node.value,)
                if child in lines:  # YAML would silently keep the last one
                    raise SpecError(f"{source}:{key_node.start_mark.line + 1}: {loc_text(child)}: duplicate key "
                                    f"(first on line {lines[child]}); keep one")
                lines[child] = key_node.start_mark.line + 1
                walk(value_node, child)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    if node is not None:
        try:
            walk(node, ())
        except RecursionError:
            raise SpecError(f"{source}: the YAML is nested too deeply to read (a study file nests a few levels)") \
                from None
    return data, lines


def _check_size(root, source: str) -> None:
    """Count the node tree as a walk would see it (aliases expanded) and stop early."""
    count, stack = 0, [root]
    while stack:
        n = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise SpecError(f"{source}: the YAML expands to more than {MAX_YAML_NODES:,} values (anchors and "
                            "aliases included); a study file is a few dozen lines")
        if isinstance(n, yaml.MappingNode):
            stack.extend(v for pair in n.value for v in pair)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


class Strict(BaseModel):
    """A spec section: unknown keys are errors, types are not coerced, values never change."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --------------------------------------------------------------------------- problems


class Problems:
    """Collects errors as `file:line: key: message` and raises them together."""

    def __init__(self, source: str, lines: dict[tuple, int]):
        self.source, self.lines, self.items = source, lines, []

    def add(self, loc: tuple, message: str) -> None:
        line = None
        for n in range(len(loc), 0, -1):  # the deepest key YAML knows a line for
            line = self.lines.get(tuple(loc[:n]))
            if line is not None:
                break
        where = f"{self.source}:{line}" if line else self.source
        key = loc_text(loc)
        self.items.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecError("\n".join(self.items))


def loc_text(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def closest(name: str, candidates) -> str:
    hint = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def schema_errors(error: ValidationError, problems: Problems, root: type[BaseModel], tags: tuple = ()) -> None:
    """Each pydantic error as a problem at its key. `root`: the schema the errors are about;
    `tags`: its discriminated unions' tags, which pydantic puts in locations and YAML has not."""
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if part not in tags)
        if item["type"] == "extra_forbidden":
            model = model_at(loc[:-1], root)
            fields = list(model.model_fields) if model else []
            problems.add(loc, f"unknown key {loc[-1]!r}: expected one of {fields}{closest(loc[-1], fields)}")
        elif item["type"] == "missing":
            problems.add(loc, "missing: this key is required")
        elif item["type"] == "string_pattern_mismatch":
            problems.add(loc, f"expected letters, digits, '_', '.' or '-', not starting with '.' (it names a folder), "
                              f"got {item['input']!r}")
        else:
            problems.add(loc, f"{item['msg'].lower()}, got {item['input']!r}")


def model_at(loc: tuple, root: type[BaseModel]):
    """The pydantic model that owns the key at `loc` (for suggestions)."""
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        hint = info.annotation
        for candidate in (hint, *getattr(hint, "__args__", ())):
            inner = getattr(candidate, "__args__", (candidate,))
            found = next((c for c in (candidate, *inner) if isinstance(c, type) and issubclass(c, BaseModel)), None)
            if found:
                model = found
                break
        else:
            return None
    return model
