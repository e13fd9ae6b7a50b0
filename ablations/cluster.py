"""The Ray cluster a study runs on: reached within seconds or not at all, and able to hold one
trial before any trial starts.

    check_address("10.0.0.5:6379")          # nobody answers there: ClusterUnreachable at once
    require_resources({"cpu": 1, "gpu": 3, "workers": 1})   # no node has 3 GPUs: ResourcesUnavailable

Without these, Ray retries an address nobody answers at for minutes (printing raw GCS log
lines), and Tune waits forever for a trial that asks for more than any node has.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Mapping

from ablations.cli import UsageError

PROBE_SECONDS = 5.0  # how long an address may take to accept a connection
# An autoscaling cluster may add the node a trial needs: wait this long for it (the environment
# variable overrides it, and also makes any cluster wait).
WAIT_ENV = "ABLATE_RESOURCE_WAIT_SECONDS"
AUTOSCALING_WAIT_SECONDS = 600.0
POLL_SECONDS = 5.0
STUDY_KEYS = {"cpu": "resources.cpu", "gpu": "resources.gpu"}  # where a study sets what a trial asks for


class ClusterUnreachable(UsageError):
    """No Ray cluster answers at the given address."""


class ResourcesUnavailable(UsageError):
    """A trial asks for more than any node of the cluster has (so Tune would wait forever)."""


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of 'host:port', 'ray://host:port' or '[v6]:port'; None for 'auto' / 'local'."""
    text = address.strip()
    if text in ("auto", "local", ""):
        return None
    text = text.split("://", 1)[-1].rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ClusterUnreachable(f"--address {address!r}: expected HOST:PORT of a Ray cluster's head "
                                 "(e.g. 10.0.0.5:6379, or ray://HOST:10001), or 'auto'")
    if not 0 < int(port) < 65536:
        raise ClusterUnreachable(f"--address {address!r}: port {port} is not in 1-65535")
    return host.strip("[]"), int(port)


def check_address(address: str, seconds: float = PROBE_SECONDS) -> None:
    """Raise ClusterUnreachable unless something accepts a connection at `address` within `seconds`."""
    target = host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=seconds).close()
    except OSError as error:
        reason = f"no answer within {seconds:.0f} s" if isinstance(error, TimeoutError) else \
            (error.strerror or str(error)).lower()
        raise ClusterUnreachable(
            f"no Ray cluster at {address} ({reason}): start one with `ray start --head`, "
            "check the address (--address or RAY_ADDRESS), or leave both out to run on this machine") from None


def _node_resources() -> list[dict[str, float]]:
    import ray

    return [dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive")]


def shortfall(resources: Mapping, nodes: list[dict[str, float]], keys: Mapping[str, str] = STUDY_KEYS) -> str | None:
    """Why a trial with these `resources` (cpu, gpu per worker; workers) cannot run on `nodes`,
    or None when it can: each worker must fit on one node, and all of them on the cluster.
    `keys` name the settings the message blames."""
    workers = int(resources.get("workers", 1))
    per_worker = {"CPU": float(resources.get("cpu", 1.0)), "GPU": float(resources.get("gpu", 0.0))}
    total = {k: sum(n.get(k, 0.0) for n in nodes) for k in per_worker}
    largest = {k: max((n.get(k, 0.0) for n in nodes), default=0.0) for k in per_worker}
    has = (f"the cluster has {len(nodes)} node(s) with {total['CPU']:g} CPU(s) and {total['GPU']:g} GPU(s) in all, "
           f"at most {largest['CPU']:g} CPU(s) and {largest['GPU']:g} GPU(s) on one node")
    for key, ask in per_worker.items():
        field = keys[key.lower()]
        if ask > 0 and not any(n.get(key, 0.0) >= ask and n.get("CPU", 0.0) >= per_worker["CPU"] for n in nodes):
            who = "a trial" if workers == 1 else "each of a trial's workers"
            return f"{field}: {who} asks for {ask:g} {key}(s) on one node, but {has}"
        if workers > 1 and ask * workers > total[key]:
            return (f"{field}: a trial's {workers} workers ask for {ask * workers:g} {key}(s) in all "
                    f"({ask:g} each), but {has}")
    return None


def require_resources(resources: Mapping, say=print, keys: Mapping[str, str] = STUDY_KEYS) -> None:
    """Before any trial starts: raise ResourcesUnavailable when the connected Ray cluster cannot
    hold one trial. An autoscaling cluster (Ray's cluster launcher leaves ~/ray_bootstrap_config.yaml
    on its head node) gets a bounded wait for a node that fits, with a message."""
    problem = shortfall(resources, _node_resources(), keys)
    if problem is None:
        return
    wait = float(os.environ.get(WAIT_ENV, AUTOSCALING_WAIT_SECONDS if _autoscaling() else 0.0))
    if wait > 0:
        say(f"{problem}; waiting up to {wait:.0f} s for the autoscaler to add a node that fits "
            f"({WAIT_ENV} changes the bound; Ctrl-C stops)")
        deadline = time.monotonic() + wait
        while problem is not None and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            problem = shortfall(resources, _node_resources(), keys)
        if problem is None:
            return
        problem += f" (after waiting {wait:.0f} s)"
    raise ResourcesUnavailable(f"{problem}: it could never start. Ask for less, or run on a cluster that has "
                               "them (--address or RAY_ADDRESS)")


def _autoscaling() -> bool:
    return Path("~/ray_bootstrap_config.yaml").expanduser().exists()
