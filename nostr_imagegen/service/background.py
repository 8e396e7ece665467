"""The runner's background machinery: one thread for the ledger, and guarded side tasks.

The ledger is SQLite, whose calls block: they run on a thread of their own, one at a time,
so they keep their order and the event loop stays responsive. Side tasks (feedback, answers
to publish, payment waits) run on their own; a failure is logged, never lost silently.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["BackgroundTasks", "LedgerThread"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class LedgerThread:
    """``await ledger_io(ledger.claim, event, relay=url)`` runs the call on the ledger's thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")

    async def __call__(self, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(method, *args, **kwargs)
        )

    def shutdown(self) -> None:
        """Wait for the calls already given (the last answers get recorded), then stop."""
        self._executor.shutdown(wait=True)


class BackgroundTasks:
    """Tasks nobody awaits: kept referenced until done, their failures logged."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        async def guarded() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("background task %s failed", name)
                return None

        task = asyncio.create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def finish(self, timeout_s: float) -> None:
        """Let the tasks finish within ``timeout_s`` (answers still going out), then cancel."""
        if not self._tasks:
            return
        await asyncio.wait(list(self._tasks), timeout=timeout_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
