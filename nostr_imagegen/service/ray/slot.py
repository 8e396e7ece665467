"""``RaySlot``: the front's ``EngineSlot`` for one Ray worker actor (``service.ray.actor``).

    slot = RaySlot(actor, name="ray-worker-0", planner=Planner(engine_config))
    outcomes = await slot.run([EngineTask(active, progress=on_step)])
    slot.loaded_models()      # what the worker held after its last run (affinity routing)

While a run is in flight the slot watches each task's ``active.cancel``: one job cancelled
tells the actor to stop that job (``actor.cancel``); every job cancelled cancels the whole
call (``ray.cancel`` of the stream, which reaches the running step).

A worker that dies mid-run (``ActorDiedError``, ``ActorUnavailableError``, any
``RayActorError``) ends the unfinished tasks with ``EngineUnavailable``: the front runs them
again elsewhere. The slot is then unavailable until a probe (``ping``) finds the actor
restarted by Ray (``max_restarts``); it rejoins with an empty affinity view, since a new
process holds no model. Nothing here blocks the event loop: object refs are awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from nostr_imagegen.errors import (
    EngineError,
    EngineUnavailable,
    JobCancelled,
)
from nostr_imagegen.service.ray.messages import Done, Outcome, Progress, WireTask, from_error
from nostr_imagegen.service.slots import EngineTask, TaskOutcome

if TYPE_CHECKING:
    from PIL import Image

    from nostr_imagegen.engine.planner import Planner

__all__ = ["RaySlot"]

logger = logging.getLogger(__name__)

#: How often a run looks at its tasks' cancel flags (``threading.Event``s, not awaitable).
_CANCEL_POLL_S = 0.05
#: Probing a dead worker: first after this, doubling up to ``_PROBE_MAX_S``.
_PROBE_FIRST_S = 0.2
_PROBE_MAX_S = 5.0
#: How long one probe waits for the restarted actor's answer.
_PROBE_TIMEOUT_S = 30.0


class RaySlot:
    """One worker actor as an ``EngineSlot`` (see the module doc).

    ``loaded``: the models the actor holds already (one found again after a restart of the
    front). ``kill_on_close``: ``close()`` ends the actor (the slots ``build_ray_slots``
    made); False for a second view over an actor someone else owns. ``on_close`` runs after
    the slot closed (``build_ray_slots`` disconnects from Ray when the last one has)."""

    def __init__(
        self,
        actor: Any,
        *,
        name: str,
        planner: Planner,
        loaded: frozenset[str] = frozenset(),
        kill_on_close: bool = True,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.actor = actor
        self._name = name
        self._planner = planner
        self._kill_on_close = kill_on_close
        self._on_close = on_close
        self._available = True
        self._loaded = loaded
        self._probe: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def available(self) -> bool:
        return self._available and not self._closed

    def loaded_models(self) -> frozenset[str]:
        return self._loaded

    def max_batch(self, model: str) -> int:
        return self._planner.max_batch(model)

    async def stats(self) -> dict[str, Any]:
        """The worker's own count: ``{"pid", "loaded_models", "loads", "jobs_run"}``."""
        result: dict[str, Any] = await self.actor.stats.remote()
        return result

    async def pid(self) -> int:
        """The worker's process id (for operators, and for tests that kill it)."""
        result: int = await self.actor.pid.remote()
        return result

    async def run(self, tasks: Sequence[EngineTask]) -> list[TaskOutcome]:
        if not tasks:
            return []
        if not self.available:
            return [EngineUnavailable(f"{self._name} is restarting") for _ in tasks]
        import ray

        wire = [WireTask(task.active.job, await _encoded_input(task.init_image)) for task in tasks]
        outcomes: dict[str, TaskOutcome] = {}
        stream = self.actor.run.options(num_returns="streaming").remote(wire)
        watcher = asyncio.create_task(self._watch_cancels(tasks, stream))
        try:
            async for ref in stream:
                self._handle(await ref, tasks, outcomes)
        except ray.exceptions.TaskCancelledError:
            for task in tasks:
                outcomes.setdefault(task.active.job.id, JobCancelled("the job was cancelled"))
        except ray.exceptions.RayActorError as exc:
            logger.warning("%s died under %d job(s): %s", self._name, len(tasks), exc)
            self._lost()
            for task in tasks:
                outcomes.setdefault(
                    task.active.job.id, EngineUnavailable(f"{self._name} went away mid-job")
                )
        except ray.exceptions.RayError as exc:
            logger.error("%s failed a run: %s", self._name, exc)
            for task in tasks:
                outcomes.setdefault(task.active.job.id, EngineError(f"the worker failed: {exc}"))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                ray.cancel(stream)
            raise
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        return [
            outcomes.get(task.active.job.id, EngineError("the worker gave no outcome"))
            for task in tasks
        ]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self._kill_on_close:
            import ray

            with contextlib.suppress(Exception):
                ray.kill(self.actor, no_restart=True)
        if self._on_close is not None:
            self._on_close()

    # -- internals --------------------------------------------------------------------------

    def _handle(
        self, message: object, tasks: Sequence[EngineTask], outcomes: dict[str, TaskOutcome]
    ) -> None:
        if isinstance(message, Progress):
            for task in tasks:
                if task.active.job.id == message.job_id and task.progress is not None:
                    task.progress(message.step, message.total)
        elif isinstance(message, Outcome):
            if message.error is not None:
                outcomes[message.job_id] = from_error(message.error)
            else:
                outcomes[message.job_id] = [image.stored() for image in message.images]
        elif isinstance(message, Done):
            self._loaded = frozenset(message.loaded_models)
        else:
            logger.error("%s sent something unknown: %r", self._name, type(message))

    async def _watch_cancels(self, tasks: Sequence[EngineTask], stream: Any) -> None:
        import ray

        told: set[str] = set()
        while True:
            cancelled = {t.active.job.id for t in tasks if t.active.cancel.is_set()}
            if cancelled and len(cancelled) == len(tasks):
                ray.cancel(stream)  # reaches the running step; the stream ends cancelled
                return
            for job_id in cancelled - told:
                told.add(job_id)
                self.actor.cancel.remote(job_id)  # fire and forget: the outcome says
            await asyncio.sleep(_CANCEL_POLL_S)

    def _lost(self) -> None:
        self._available = False
        self._loaded = frozenset()
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._wait_for_restart(), name=f"{self._name}-probe")

    async def _wait_for_restart(self) -> None:
        import ray

        delay = _PROBE_FIRST_S
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await asyncio.wait_for(self.actor.ping.remote(), _PROBE_TIMEOUT_S)
            except (ray.exceptions.RayError, TimeoutError) as exc:
                logger.debug("%s not back yet: %s", self._name, exc)
                delay = min(delay * 2, _PROBE_MAX_S)
                continue
            self._loaded = frozenset()
            self._available = True
            logger.info("%s is back", self._name)
            return


async def _encoded_input(image: Image.Image | None) -> bytes | None:
    """An input image as PNG bytes for the wire (lossless; the worker decodes it)."""
    if image is None:
        return None

    def encode() -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    return await asyncio.to_thread(encode)
