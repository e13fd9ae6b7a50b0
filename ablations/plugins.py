"""Plugin modules on Ray: ship the driver's plugin code to every node and check it imports there.

A study's `plugins:` modules may live only on the driver (a folder next to the
study file). `py_modules(names)` is the runtime_env entry that ships their
top-level packages with the Ray job, so local workers and a cluster's nodes
import the same files; `check_nodes(names)` imports them once on every alive
node before any trial starts and refuses, naming the node, when one cannot or
finds different code.
"""

from __future__ import annotations

from m3ae import plugins
from m3ae.plugins import PluginError


def py_modules(names) -> list[str]:
    """Ray runtime_env `py_modules`: the file or folder of each plugin's top-level package."""
    tops = dict.fromkeys(name.split(".")[0] for name in names)
    paths = []
    for top in tops:
        where = plugins.source(top)
        if where is None:
            raise PluginError(f"plugin {top!r} has no file or folder to ship to Ray's workers "
                              "(a built-in or namespace module); make it a regular module or package")
        paths.append(str(where))
    return paths


def _probe(names: list[str]) -> dict:
    """On a node: import the plugins and report each one's identity, or the error."""
    import importlib
    import socket

    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - reported to the driver by node
            return {"host": socket.gethostname(), "error": f"cannot import {name!r}: {type(error).__name__}: {error}"}
    return {"host": socket.gethostname(), "hashes": {n: plugins.file_hash(n) for n in names}}


def check_nodes(names) -> None:
    """Import the plugins on every alive node of the connected Ray; PluginError if a node
    cannot, or holds other code than the driver (its own installed copy, another version)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    names = list(names)
    if not names:
        return
    expected = {n: plugins.file_hash(n) for n in names}  # files, not versions: a shipped copy has no metadata
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(names)
            for node in ray.nodes() if node.get("Alive")]
    problems = []
    for found in ray.get(refs):
        if "error" in found:
            problems.append(f"node {found['host']}: {found['error']}")
            continue
        for name, value in found["hashes"].items():
            if value != expected[name]:
                problems.append(f"node {found['host']}: plugin {name!r} imports other files ({value}) than the "
                                f"driver's ({expected[name]})")
    if problems:
        raise PluginError(f"the plugins {names} must import the same on every Ray node, so no trial was started "
                          "(ablate ships a plugin that only the driver sees with the Ray job it starts or joins; "
                          "a Ray session started before, or a node with its own copy, does not get it):\n  "
                          + "\n  ".join(problems))
