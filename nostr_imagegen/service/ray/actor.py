"""The Ray worker: an async actor holding its own ``Engine`` and pipeline cache.

Created by ``service.ray.build_ray_slots``, driven by a ``RaySlot``::

    actor = start_worker("nostr-imagegen-worker-0", config_data, encode,
                         num_gpus=1, num_cpus=1, max_restarts=3)
    stream = actor.run.options(num_returns="streaming").remote([WireTask(job)])
    async for ref in stream:
        message = await ref      # Progress ..., then one Outcome per job, then Done
    await actor.cancel.remote(job_id)                # stops that job at its next step
    ray.cancel(stream)                               # stops every job of the call

The engine runs in one thread of the actor: one ``run`` at a time, so a pipeline is never
called from two threads at once; ``cancel``, ``ping`` and ``stats`` are answered meanwhile
(the actor's event loop stays free). The images come back encoded with the front's
``EncodeSettings``, so no tensor or PIL image crosses the wire.

The device: ``device`` when given (``build_ray_slots`` passes ``"cuda"`` to a worker with
``num_gpus > 0``: Ray sets ``CUDA_VISIBLE_DEVICES`` to the GPU it gave the actor, so
``cuda`` is that GPU and no other), else the configuration's.

Ray runs actor methods at most once here (``max_task_retries=0``): when the process dies
mid-job, the front decides whether the job runs again (``RaySlot``).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from nostr_imagegen.errors import EngineError
from nostr_imagegen.service.ray.messages import (
    Done,
    Outcome,
    Progress,
    WireImage,
    WireTask,
    to_error,
)
from nostr_imagegen.service.slots import EncodeSettings

if TYPE_CHECKING:
    from PIL import Image

    from nostr_imagegen.engine.generate import Engine
    from nostr_imagegen.engine_config import EngineConfig

__all__ = ["EngineWorker", "config_digest", "start_worker"]

logger = logging.getLogger(__name__)

#: Calls served while a job runs: ``cancel``, ``ping``, ``stats`` (and a queued ``run``).
MAX_CONCURRENCY = 16
#: Cancellations remembered for jobs not (yet) running here: a ``cancel`` may overtake its
#: ``run`` (Ray does not order calls of an async actor).
_EARLY_CANCELS = 256

Message = Progress | Outcome | Done


def config_digest(config_data: dict[str, Any], encode: EncodeSettings) -> str:
    """What a worker was built from, to tell a found actor built for another config."""
    text = json.dumps(
        [config_data, [encode.default_output, encode.embed_metadata, encode.quality]],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


class EngineWorker:
    """The actor's class (see the module doc); ``config_data`` is
    ``EngineConfig.model_dump(mode="json")``, validated again here."""

    def __init__(
        self,
        config_data: dict[str, Any],
        encode: EncodeSettings,
        *,
        device: str | None = None,
        torch_threads: int | None = None,
    ) -> None:
        from nostr_imagegen.engine_config import EngineConfig

        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
        self._digest = config_digest(config_data, encode)
        self._config: EngineConfig = EngineConfig.model_validate(config_data)
        self._encode = encode
        self._device = device
        self._engine: Engine | None = None  # built on first use: the actor starts fast
        self._jobs_run = 0
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._one_run = asyncio.Lock()
        self._flags: dict[str, threading.Event] = {}
        self._stepping: set[str] = set()
        self._early_cancels: deque[str] = deque(maxlen=_EARLY_CANCELS)

    # -- small calls, answered while a job runs ---------------------------------------------

    async def ping(self) -> str:
        return self._digest

    async def pid(self) -> int:
        return os.getpid()

    async def stats(self) -> dict[str, Any]:
        """``{"pid", "loaded_models", "loads", "jobs_run", "running"}`` (``running``: the
        jobs of the current run that have made a step)."""
        return {
            "pid": os.getpid(),
            "running": sorted(self._stepping),
            "loaded_models": sorted(self._loaded()),
            "loads": self._load_count(),
            "jobs_run": self._jobs_run,
        }

    async def cancel(self, job_id: str) -> bool:
        """Stop ``job_id`` at its next step; True when it runs here now."""
        flag = self._flags.get(job_id)
        if flag is None:
            self._early_cancels.append(job_id)
            return False
        flag.set()
        return True

    # -- the work ---------------------------------------------------------------------------

    async def run(self, tasks: Sequence[WireTask]) -> AsyncIterator[Message]:
        """Generate and encode ``tasks`` (one pipeline call when the engine batches them):
        ``Progress`` as steps happen, then an ``Outcome`` per task in order, then ``Done``."""
        flags = {task.job.id: threading.Event() for task in tasks}
        for job_id, flag in flags.items():
            if job_id in self._early_cancels:
                flag.set()
        # Registered before waiting for the engine: a cancel may come while another run holds it.
        self._flags.update(flags)
        try:
            async with self._one_run:
                outcomes: list[Outcome] = []
                async for message in self._stream(tasks, flags):
                    if isinstance(message, Outcome):
                        outcomes.append(message)
                    else:
                        yield message
        finally:
            for job_id in flags:
                self._flags.pop(job_id, None)
                self._stepping.discard(job_id)
        for outcome in outcomes:
            yield outcome
        yield Done(loaded_models=tuple(sorted(self._loaded())), loads=self._load_count())

    async def _stream(
        self, tasks: Sequence[WireTask], flags: dict[str, threading.Event]
    ) -> AsyncIterator[Progress | Outcome]:
        """The engine's work in its thread: progress as it comes, then the outcomes."""
        loop = asyncio.get_running_loop()
        messages: asyncio.Queue[Progress] = asyncio.Queue()

        def report(job_id: str) -> Callable[[int, int], None]:
            def progress(step: int, total: int) -> None:  # in the engine's thread
                self._stepping.add(job_id)
                loop.call_soon_threadsafe(messages.put_nowait, Progress(job_id, step, total))

            return progress

        work = loop.run_in_executor(
            self._thread, self._generate, tasks, flags, {i: report(i) for i in flags}
        )
        getter: asyncio.Future[Progress] | None = None
        try:
            while not work.done() or not messages.empty():
                getter = asyncio.ensure_future(messages.get())
                either: set[asyncio.Future[Any]] = {getter, work}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
        except asyncio.CancelledError:
            # ray.cancel of the stream: the engine stops at its next step. The thread stays
            # this actor's only one, so the next run waits for it to finish.
            for flag in flags.values():
                flag.set()
            raise
        finally:
            if getter is not None:
                getter.cancel()
        for outcome in work.result():
            yield outcome

    def _generate(
        self,
        tasks: Sequence[WireTask],
        flags: dict[str, threading.Event],
        progress: dict[str, Callable[[int, int], None]],
    ) -> list[Outcome]:
        """In the engine's thread: every task's outcome, never raising."""
        try:
            engine = self._get_engine()
        except Exception as exc:
            logger.exception("building the engine failed")
            return [Outcome(task.job.id, error=to_error(exc)) for task in tasks]
        results = self._results(engine, tasks, flags, progress)
        outcomes = []
        for task, result in zip(tasks, results, strict=True):
            self._jobs_run += 1
            if isinstance(result, BaseException):
                outcomes.append(Outcome(task.job.id, error=to_error(result)))
                continue
            try:
                outcomes.append(Outcome(task.job.id, images=self._encoded(task, result)))
            except Exception as exc:  # e.g. an output type the encoder does not write
                outcomes.append(Outcome(task.job.id, error=to_error(exc)))
        return outcomes

    def _results(
        self,
        engine: Engine,
        tasks: Sequence[WireTask],
        flags: dict[str, threading.Event],
        progress: dict[str, Callable[[int, int], None]],
    ) -> list[Any]:
        """One result or exception per task: one batched call when the tasks can share one,
        else the tasks one after another."""
        from nostr_imagegen.engine.batch import BatchRequest

        if len(tasks) > 1:
            requests = [
                BatchRequest(job=t.job, progress=progress[t.job.id], cancel=flags[t.job.id])
                for t in tasks
            ]
            try:
                return list(engine.generate_batch(requests))
            except ValueError as refused:
                # Not one batch by the engine's own rules (img2img, keys that differ, above
                # max_batch), checked before any step: the front groups only jobs alike, so
                # this is a safety net, and the jobs run one by one rather than all failing.
                logger.warning("running %d jobs one by one: %s", len(tasks), refused)
            except Exception as exc:
                return [exc] * len(tasks)
        results: list[Any] = []
        for task in tasks:
            try:
                results.append(
                    engine.generate(
                        task.job,
                        init_image=_decode(task.init_image),
                        progress=progress[task.job.id],
                        cancel=flags[task.job.id],
                    )
                )
            except Exception as exc:
                results.append(exc)
        return results

    def _encoded(self, task: WireTask, result: Any) -> tuple[WireImage, ...]:
        return tuple(
            WireImage.from_stored(image) for image in self._encode.encode(task.job, result)
        )

    def _get_engine(self) -> Engine:
        if self._engine is None:
            from nostr_imagegen.engine.generate import Engine

            self._engine = Engine(self._config, device=self._device)
        return self._engine

    def _load_count(self) -> int:
        return 0 if self._engine is None else self._engine.loads

    def _loaded(self) -> frozenset[str]:
        return frozenset() if self._engine is None else self._engine.loaded_models()


def _decode(data: bytes | None) -> Image.Image | None:
    if data is None:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.copy()
    except OSError as exc:
        raise EngineError(f"the input image did not arrive intact ({exc})") from exc


def start_worker(
    name: str,
    config_data: dict[str, Any],
    encode: EncodeSettings,
    *,
    num_gpus: float,
    num_cpus: float,
    max_restarts: int,
    device: str | None = None,
    torch_threads: int | None = None,
) -> Any:
    """The actor ``name`` in the current namespace: the running one (``get_if_exists``),
    else a new one, detached from this process (Ray imported here)."""
    import ray

    return (
        ray.remote(EngineWorker)
        .options(
            name=name,
            lifetime="detached",
            get_if_exists=True,
            num_gpus=num_gpus,
            num_cpus=num_cpus,
            max_restarts=max_restarts,
            max_task_retries=0,  # the front decides about reruns: at most once here
            max_concurrency=MAX_CONCURRENCY,
        )
        .remote(config_data, encode, device=device, torch_threads=torch_threads)
    )
