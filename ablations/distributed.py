"""Data-parallel trials: a trial's pre-training and fine-tuning on `workers` processes (DDP),
started with Ray Train from inside the trial.

    with stage_runner(resources, storage=..., name=...) as stages:
        pre = stages.pretrain(cfg, out_dir, cache_dir, callbacks)       # as m3ae.train.pretrain
        res = stages.finetune(cfg, task, pre.checkpoint, out_dir, cache_dir, callbacks)

With one worker, `stages` is m3ae.train itself, in the trial's process. With more, it is a
`WorkerGroup`, and this is how it runs:
- Ray Train V2's supported nesting (docs/architecture.md, pitfalls): the trial (a Tune function, a search's Ray
  task, or `ablate train`) calls `TorchTrainer.fit()`. The trial is only the driver: it
  reserves no CPU (`trial_request`), and the TorchTrainer reserves every worker's CPUs and
  GPUs at once, in a placement group of its own. Ray Train sets up torch.distributed (gloo on
  CPU workers, nccl when each worker has a GPU); `m3ae.train.distributed` does the rest
  (DDP, a shard of each global batch per worker, rank 0 writes the checkpoints).
- One `fit()` serves the whole trial. Starting it costs ~14 s here, so one per stage would
  pay that for the pre-training and again for every task. It starts at the first stage (not
  before: a trial may first wait for another trial's pre-training of the same key), and its
  workers then run one stage per command from the trial until they are told to stop.
- Rank 0 forwards every callback event to the trial and waits for the answer. The trial's
  own callbacks (the MLflow buffer, Tune's reporter, a search's pruner) therefore run in the
  trial's process, once per event and in order. An exception that one of them raises stops
  training where it was raised, as it would in a single process.
- After each stage the workers write `workers.json` beside the stage's outputs (rank, host,
  pid, device, examples trained on, a digest of the first shard), logged on the stage's run.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Mapping

from m3ae import plugins
from m3ae.train.callbacks import Callback, CallbackList

DRIVER_MEMORY = 256 * 2**20  # what a data-parallel trial's own process reserves (Tune cannot reserve nothing)
MAX_ARTIFACT_BYTES = 16 * 2**20  # files rank 0 reports are sent along, for a trial on another node
EVENTS, ANSWERS, COMMANDS = "events", "answers", "commands/"
STOP_SECONDS = 60.0  # how long closing waits for the workers to leave


def trial_request(resources: Mapping) -> dict[str, float]:
    """What the trial's own process reserves, in Tune's `with_resources` keys. One worker: the
    study's cpu and gpu. Several: the workers reserve those each, and the trial only drives them."""
    if int(resources.get("workers", 1)) == 1:
        return {"cpu": float(resources.get("cpu", 1.0)), "gpu": float(resources.get("gpu", 0.0))}
    return {"cpu": 0.0, "memory": DRIVER_MEMORY}


def trials_that_fit(resources: Mapping, cluster: Mapping[str, float]) -> int:
    """How many trials the cluster runs at once (at least 1): its CPUs (and GPUs) over a trial's."""
    workers = int(resources.get("workers", 1))
    fits = [cluster.get("CPU", 1.0) / (float(resources.get("cpu", 1.0)) * workers)]
    if float(resources.get("gpu", 0.0)) > 0:
        fits.append(cluster.get("GPU", 0.0) / (float(resources["gpu"]) * workers))
    return max(1, int(min(fits)))


def stage_runner(resources: Mapping, *, storage: str | Path, name: str):
    """m3ae.train in this process (one worker), or a `WorkerGroup` of `resources["workers"]`."""
    workers = int(resources.get("workers", 1))
    if workers == 1:
        return InProcess()
    return WorkerGroup(workers, float(resources.get("cpu", 1.0)), float(resources.get("gpu", 0.0)),
                       storage=str(storage), name=name)


class InProcess:
    """The stages as they are: m3ae.train's pretrain and finetune, in the calling process."""

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc) -> None:
        pass

    @staticmethod
    def pretrain(*args, **kwargs):
        from m3ae.train import pretrain

        return pretrain(*args, **kwargs)

    @staticmethod
    def finetune(*args, **kwargs):
        from m3ae.train import finetune

        return finetune(*args, **kwargs)


class WorkersFailed(RuntimeError):
    """The workers stopped without finishing a stage (one of them died, or Ray Train failed)."""


class WorkerGroup:
    """`workers` data-parallel processes of Ray Train, kept for a trial's stages (see the module doc).

    `cpu` and `gpu` are per worker; `storage` is where Ray Train keeps its run state and `name`
    this trial's run there (a fresh suffix per group: Ray Train would otherwise restore an old run).
    """

    def __init__(self, workers: int, cpu: float = 1.0, gpu: float = 0.0, *, storage: str, name: str):
        self.workers, self.cpu, self.gpu = workers, cpu, gpu
        self.storage, self.name = storage, f"{name}-{uuid.uuid4().hex[:8]}"
        self._relay = None
        self._thread: threading.Thread | None = None
        self._fit_error: BaseException | None = None
        self._raised: BaseException | None = None  # what one of the trial's callbacks raised

    def __enter__(self) -> WorkerGroup:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the stages (the signatures of m3ae.train's)

    def pretrain(self, cfg, out_dir: Path, cache_dir: Path, callbacks=()):
        return self._stage("pretrain", callbacks, cfg=cfg, out_dir=Path(out_dir), cache_dir=Path(cache_dir))

    def finetune(self, cfg, task: str, checkpoint: Path | None, out_dir: Path, cache_dir: Path, callbacks=()):
        return self._stage("finetune", callbacks, cfg=cfg, task=task, checkpoint=checkpoint, out_dir=Path(out_dir),
                           cache_dir=Path(cache_dir))

    # ---- the trial's side

    def _start(self) -> None:
        import ray
        import ray.train
        from ray.train.torch import TorchTrainer
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        self._relay = ray.remote(num_cpus=0)(_Relay).options(scheduling_strategy=here).remote()
        per_worker = {"CPU": self.cpu, **({"GPU": self.gpu} if self.gpu else {})}
        trainer = TorchTrainer(
            # the plugins this process imported: the workers build the same components
            _worker_loop, train_loop_config={"relay": self._relay, "plugins": plugins.loaded()},
            scaling_config=ray.train.ScalingConfig(num_workers=self.workers, use_gpu=self.gpu > 0,
                                                   resources_per_worker=per_worker),
            run_config=ray.train.RunConfig(name=self.name, storage_path=self.storage,
                                           failure_config=ray.train.FailureConfig(max_failures=0)))
        # fit() blocks until the workers leave; the trial's thread meanwhile answers their events
        self._thread = threading.Thread(target=self._fit, args=(trainer,), name=f"fit-{self.name}", daemon=True)
        self._thread.start()

    def _fit(self, trainer) -> None:
        try:
            trainer.fit()
        except BaseException as error:  # noqa: BLE001 - handed to the trial's thread
            self._fit_error = error
        finally:
            self._relay.put.remote(EVENTS, ("done", None))

    def _stage(self, stage: str, callbacks, **kwargs):
        import ray

        if self._thread is None:
            self._start()
        callbacks = CallbackList(callbacks)
        for rank in range(self.workers):
            self._relay.put.remote(f"{COMMANDS}{rank}", (stage, kwargs))
        while True:
            kind, payload = ray.get(self._relay.get.remote(EVENTS))
            if kind == "event":
                self._relay.put.remote(ANSWERS, self._answer(callbacks, *payload))
            elif kind == "result":
                return payload
            elif kind == "error":  # rank 0 failed: the trial's own exception if a callback raised it
                raise self._raised if self._raised is not None else payload
            else:  # "done": fit() returned or raised without a result
                raise WorkersFailed(f"the {self.workers} data-parallel workers stopped during {stage}: "
                                    f"{type(self._fit_error).__name__}: {self._fit_error}") from self._fit_error

    def _answer(self, callbacks: CallbackList, hook: str, args: tuple, content: bytes | None):
        """Run one event through the trial's callbacks; the answer is None or what they raised."""
        try:
            if content is not None and not Path(args[1]).exists():  # rank 0 ran on another node
                Path(args[1]).parent.mkdir(parents=True, exist_ok=True)
                Path(args[1]).write_bytes(content)
            getattr(callbacks, hook)(*args)
            return None
        except BaseException as error:  # noqa: BLE001 - rank 0 raises it where the event happened
            self._raised = error
            return _portable(error)

    def close(self) -> None:
        """Tell the workers to leave and wait for fit() to return (a rank 0 waiting for an answer
        gets an error instead, so a trial stopped mid-stage stops its workers too)."""
        if self._thread is None:
            return
        import ray

        for rank in range(self.workers):
            self._relay.put.remote(f"{COMMANDS}{rank}", None)
        self._relay.put.remote(ANSWERS, RuntimeError("the trial stopped"))
        self._thread.join(STOP_SECONDS)
        ray.kill(self._relay)
        self._thread = None


class _Relay:
    """Messages between a trial and its workers, in named queues. An asyncio actor: a call that
    waits for a message does not hold up the others."""

    def __init__(self):
        self._queues: dict[str, asyncio.Queue] = {}

    def _queue(self, name: str) -> asyncio.Queue:
        return self._queues.setdefault(name, asyncio.Queue())

    async def put(self, name: str, item) -> None:
        self._queue(name).put_nowait(item)

    async def get(self, name: str):
        return await self._queue(name).get()

    async def ask(self, event):
        """Rank 0: an event for the trial; returns the trial's answer."""
        self._queue(EVENTS).put_nowait(("event", event))
        return await self._queue(ANSWERS).get()


def _portable(error: BaseException) -> BaseException:
    """`error` if it pickles (to cross to the other side), else a RuntimeError that says what it was."""
    from ray import cloudpickle

    try:
        cloudpickle.dumps(error)
        return error
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(error).__name__}: {error}")


# --------------------------------------------------------------------------- the workers' side


class _Forward(Callback):
    """Rank 0's callbacks: each event goes to the trial, which answers once its callbacks ran it."""

    def __init__(self, relay):
        self.relay = relay

    def _ask(self, hook: str, *args, content: bytes | None = None) -> None:
        import ray

        answer = ray.get(self.relay.ask.remote((hook, args, content)))
        if answer is not None:
            raise answer

    def on_stage_start(self, stage, total_steps=None):
        self._ask("on_stage_start", stage, total_steps)

    def on_step(self, stage, step, metrics):
        self._ask("on_step", stage, step, dict(metrics))

    def on_eval(self, stage, step, metrics):
        self._ask("on_eval", stage, step, dict(metrics))

    def on_artifact(self, stage, path):
        path = Path(path)
        content = path.read_bytes() if path.stat().st_size <= MAX_ARTIFACT_BYTES else None
        self._ask("on_artifact", stage, path, content=content)

    def on_end(self, stage, metrics):
        self._ask("on_end", stage, dict(metrics))


def _worker_loop(config: dict) -> None:
    """A Ray Train worker: runs the stages the trial sends, until told to stop."""
    import ray
    import ray.train.torch
    import torch.distributed as dist

    from m3ae.train import finetune, pretrain
    from m3ae.train.distributed import DataParallel

    plugins.load(config.get("plugins", ()))  # before any config names their components
    relay, stages = config["relay"], {"pretrain": pretrain, "finetune": finetune}
    device = ray.train.torch.get_device()
    while True:
        parallel = DataParallel.from_process_group(device)  # fresh counts for each stage's workers.json
        command = ray.get(relay.get.remote(f"{COMMANDS}{parallel.rank}"))
        if command is None:
            return
        stage, kwargs = command
        callbacks = [_Forward(relay)] if parallel.is_main else []
        try:
            result = stages[stage](**kwargs, callbacks=callbacks, parallel=parallel)
            records: list = [None] * parallel.world_size
            dist.all_gather_object(records, {**parallel.record(), "host": socket.gethostname(), "pid": os.getpid()})
            if parallel.is_main:
                path = Path(kwargs["out_dir"]) / "workers.json"
                path.write_text(json.dumps(records, indent=1))
                callbacks[0].on_artifact(kwargs.get("task", stage), path)
        except BaseException as error:
            if parallel.is_main:
                ray.get(relay.put.remote(EVENTS, ("error", _portable(error))))
            raise
        if parallel.is_main:
            ray.get(relay.put.remote(EVENTS, ("result", result)))
