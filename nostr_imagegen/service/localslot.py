"""An engine of this process as a scheduler slot: its calls in one thread of its own.

    slot = LocalSlot(Engine(config, device="cuda:1"), name="engine-1", encode=EncodeSettings())
    outcomes = await slot.run([EngineTask(active, progress=on_step)])   # see service.slots

One task runs through ``engine.generate``; several (the scheduler only groups jobs with
equal ``batch_key``) through ``engine.generate_batch`` in one pipeline call, each job with its
own seed, progress and cancel flag. An engine without ``generate_batch`` runs them one by
one. Generating and encoding share the slot's single thread, so the engine is never called
from two threads at once and the event loop never waits on torch or Pillow.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nostr_imagegen.errors import EngineError, JobCancelled, NostrImagegenError
from nostr_imagegen.service.activejobs import failure_reason
from nostr_imagegen.service.logging_json import job_context
from nostr_imagegen.service.seams import EngineLike, GenerationLike
from nostr_imagegen.service.slots import EncodeSettings, EngineTask, TaskOutcome

__all__ = ["LocalSlot"]

logger = logging.getLogger(__name__)


class LocalSlot:
    """``EngineSlot`` for an in-process engine (``engine.generate.Engine`` or alike)."""

    def __init__(self, engine: EngineLike, *, name: str, encode: EncodeSettings) -> None:
        self.engine = engine
        self._name = name
        self._encode = encode
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def __repr__(self) -> str:
        return f"LocalSlot({self._name!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def available(self) -> bool:
        return True  # an engine in this process does not go away on its own

    def loaded_models(self) -> frozenset[str]:
        loaded = getattr(self.engine, "loaded_models", None)
        return frozenset(loaded()) if callable(loaded) else frozenset()

    def max_batch(self, model: str) -> int:
        most = getattr(self.engine, "max_batch", None)
        return int(most(model)) if callable(most) else 1

    async def run(self, tasks: Sequence[EngineTask]) -> list[TaskOutcome]:
        """Generate and encode ``tasks`` (one outcome each, in order) in the slot's thread,
        logging with the caller's context (its job id)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, self._run, list(tasks))
        return await loop.run_in_executor(self._executor, call)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- in the slot's thread -------------------------------------------------------------

    def _run(self, tasks: list[EngineTask]) -> list[TaskOutcome]:
        if len(tasks) == 1 or not callable(getattr(self.engine, "generate_batch", None)):
            return [self._encoded(task, self._generate_one(task)) for task in tasks]
        generated = self._generate_batch(tasks)
        return [self._encoded(task, done) for task, done in zip(tasks, generated, strict=True)]

    def _generate_batch(self, tasks: list[EngineTask]) -> list[GenerationLike | NostrImagegenError]:
        from nostr_imagegen.engine.batch import BatchRequest

        requests = [
            BatchRequest(job=task.active.job, progress=task.progress, cancel=task.active.cancel)
            for task in tasks
        ]
        engine: Any = self.engine
        try:
            outcomes: list[GenerationLike | NostrImagegenError] = list(
                engine.generate_batch(requests)
            )
        except NostrImagegenError as exc:  # the whole call failed: every job ends with it
            return [exc] * len(tasks)
        except Exception as exc:
            logger.exception("batch of %d failed unexpectedly on %s", len(tasks), self._name)
            return [EngineError(f"internal error: {failure_reason(exc)}")] * len(tasks)
        if len(outcomes) != len(tasks):
            error = EngineError(f"the engine answered {len(outcomes)} of {len(tasks)} jobs")
            return [error] * len(tasks)
        return outcomes

    def _generate_one(self, task: EngineTask) -> GenerationLike | NostrImagegenError:
        if task.active.cancel.is_set():  # cancelled while the tasks before it ran
            return JobCancelled("cancelled before it started")
        with job_context(task.active.job.id):
            try:
                generated = self.engine.generate(
                    task.active.job,
                    init_image=task.init_image,
                    progress=task.progress,
                    cancel=task.active.cancel,
                )
            except NostrImagegenError as exc:
                return exc
            except Exception as exc:  # a bug in one job must not lose the others
                logger.exception("job %.12s failed unexpectedly", task.active.job.id)
                return EngineError(f"internal error: {failure_reason(exc)}")
            return generated

    def _encoded(
        self, task: EngineTask, generated: GenerationLike | NostrImagegenError
    ) -> TaskOutcome:
        if isinstance(generated, NostrImagegenError):
            return generated
        active = task.active
        if active.cancel.is_set():
            return JobCancelled("cancelled after the last step")
        with job_context(active.job.id):
            try:
                return self._encode.encode(active.job, generated)
            except NostrImagegenError as exc:  # e.g. an output type the encoder does not write
                return exc
