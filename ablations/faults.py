"""Fault injection FOR TESTS ONLY: make chosen trials fail the ways real ones do.

    ABLATE_FAULT="oom@synth_vqa:1/3f2a9c0d12,kill@pretrain:2/77be01aa90" ablate run study.yaml

Each fault is `KIND@STAGE:STEP[/TRIAL_ID]`; it fires once, in the training callback of
that stage at the first step >= STEP, in the trial with that id (every trial without one):

    raise  RuntimeError                       (a bug in the code)
    oom    torch.OutOfMemoryError             (a GPU running out of memory mid-step)
    kill   SIGKILL of the trial's own process (the worker dies: OOM killer, a lost node)
    stall  a 3 s sleep in every step from STEP on (keeps a trial busy while a test breaks
           something around it, e.g. stops the tracking server)

The driver reads the variable and hands it to its trials (Ray workers do not see the
driver's environment); unset, nothing here runs. Non-finite losses need no hook: a huge
learning rate (finetune.lr=1e6) makes them for real.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from m3ae.train.callbacks import Callback

ENV = "ABLATE_FAULT"
KINDS = ("raise", "oom", "kill", "stall")
STALL_SECONDS = 3.0


@dataclass(frozen=True)
class Fault:
    kind: str
    stage: str
    step: int
    trial_id: str | None = None


def parse(text: str | None) -> list[Fault]:
    faults = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        try:
            kind, _, rest = item.partition("@")
            where, _, trial_id = rest.partition("/")
            stage, _, step = where.rpartition(":")
            fault = Fault(kind, stage, int(step), trial_id or None)
        except ValueError:
            fault = None
        if fault is None or fault.kind not in KINDS or not fault.stage:
            raise ValueError(f"{ENV}: cannot read {item!r}: expected KIND@STAGE:STEP[/TRIAL_ID], KIND one of {KINDS}")
        faults.append(fault)
    return faults


class FaultInjector(Callback):
    """Fires the faults meant for one trial from its training steps."""

    def __init__(self, faults: list[Fault], trial_id: str):
        self.faults = [f for f in faults if f.trial_id in (None, trial_id)]

    def on_step(self, stage, step, metrics):
        for fault in list(self.faults):
            if fault.stage == stage and step >= fault.step:
                if fault.kind == "stall":
                    time.sleep(STALL_SECONDS)
                    continue
                self.faults.remove(fault)
                _fire(fault, step)


def _fire(fault: Fault, step: int) -> None:
    where = f"{fault.stage} step {step} ({ENV}, test-only fault injection)"
    if fault.kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault.kind == "oom":
        import torch

        raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB: injected at {where}")
    raise RuntimeError(f"injected failure at {where}")


def injectors(text: str | None, trial_id: str) -> list[Callback]:
    """The callbacks for one trial (none when `text` is empty: the normal case)."""
    faults = parse(text)
    return [FaultInjector(faults, trial_id)] if faults else []
