"""`ablate run --address` on a real multi-node Ray cluster (three raylets on this machine).

The cluster lives in its own process (`ray.cluster_utils.Cluster`), so it cannot collide
with the test session's local Ray (conftest's `ray_session`), and in its own RAY_TMPDIR:
a head node records its address in <tmp>/ray/ray_current_cluster, and a plain `ray.init()`
anywhere on the machine would otherwise join it. `ablate run` joins it from a second process.
Each trial run carries the Ray node id it ran on (`ablate.node`), and
the shared `--storage` folder holds Tune's experiment and the pre-train cache.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from ablations import tracking

pytestmark = pytest.mark.slow
_SCRIPT = Path(sys.executable).with_name("ablate")
ABLATE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ablations.cli"]

# A head and two workers of 1 CPU each; prints the address, shuts down when stdin closes or on SIGTERM.
CLUSTER = """
import signal, sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
for _ in range(2):
    cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
print("ADDRESS", cluster.address, flush=True)

def stop(*_):
    cluster.shutdown()
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
sys.stdin.read()
stop()
"""


@pytest.fixture
def ray_cluster():
    """(address, environment to join it with) of a 3-node Ray cluster started in a child
    process with its own temp dir (short: Ray's socket paths must fit in 107 bytes)."""
    ray_tmp = tempfile.mkdtemp(prefix="rc-", dir="/tmp")
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": ray_tmp}
    proc = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    address, lines, deadline = None, [], time.monotonic() + 60
    while address is None and time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 1.0)[0]:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("ADDRESS "):
                address = line.split()[1]
    try:
        assert address, f"the Ray cluster did not start:\n{''.join(lines)}"
        yield address, {**env, "RAY_ADDRESS": address}
    finally:
        proc.stdin.close()  # the script shuts the cluster down (its raylets and GCS) and exits
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # only this test's process group
            proc.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_trials_spread_over_the_nodes_of_a_real_cluster(tmp_path, ray_cluster):
    study = tmp_path / "spread.yaml"
    study.write_text(yaml.safe_dump({
        "name": "spread", "profile": "smoke", "factors": {"model.mim.mask_ratio": [0.5, 0.75]}, "seeds": [0, 1],
        "data": {"pretrain": "synth_pairs"}, "tasks": ["synth_vqa"],
        "metric": {"name": "synth_vqa/overall_acc", "mode": "max"}, "resources": {"cpu": 1}}))
    workdir, shared = tmp_path / "runs", tmp_path / "shared"
    address, env = ray_cluster
    done = subprocess.run([*ABLATE, "run", str(study), "--workdir", str(workdir), "--address", address,
                           "--storage", str(shared)], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Results of spread (4/4 finished)" in done.stdout

    tracker = tracking.Tracker(tracking.default_tracking_uri(workdir))
    experiment_id = tracker.client.get_experiment_by_name("spread").experiment_id
    runs = tracker.runs(experiment_id, f"tags.`{tracking.KIND}` = 'trial'")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    nodes = {r.data.tags["ablate.node"] for r in runs}
    assert len(nodes) >= 2, f"every trial ran on one node: {nodes}"
    assert all(r.data.tags.get("ablate.node_ip") for r in runs)

    # the shared storage holds Tune's experiment and the caches, the work directory does not
    assert (shared / "spread").is_dir() and not (workdir / "ray").exists()
    keys = {r.data.tags[tracking.PRETRAIN_KEY] for r in runs}
    built = {p.name for p in (shared / "cache" / "pretrain").iterdir() if p.is_dir()}
    assert keys <= built
    assert not (workdir / "cache").exists()
