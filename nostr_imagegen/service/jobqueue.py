"""The runner's in-memory bookkeeping: the jobs it holds, the queue they wait in, seen ids.

None of it survives a restart, and none of it has to: the ledger is the record. These only
answer the questions of the hot path without asking the ledger: is this job queued, at
which position (``["status", "processing", "queued: position 2"]``), was this id seen?
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from nostr_imagegen.imagejob.model import ImageJob

__all__ = ["ActiveJob", "BoundedMap", "JobQueue"]


@dataclass(eq=False)
class ActiveJob:
    """A job this process is working on (waiting for payment, queued or running)."""

    job: ImageJob
    #: The relay the request came from (the relay hint of our answers).
    relay: str | None
    #: The request's ``relays`` that passed our checks: answers go there too.
    reply_relays: tuple[str, ...]
    amount_msats: int | None = None
    bolt11: str | None = None
    #: Read by the engine between two steps: set by a customer's deletion or by shutdown.
    cancel: threading.Event = field(default_factory=threading.Event)
    #: Why ``cancel`` was set: "customer" or "shutdown".
    cancel_reason: str | None = None
    #: The task waiting for payment, while there is one.
    waiter: asyncio.Task[None] | None = None
    #: What ``EngineLike.plan`` decided at acceptance (``engine.planner.GenerationPlan`` for
    #: the library's engine): the scheduler routes by its ``model`` and batches by its
    #: ``batch_key``; None or another object: no affinity, no batching.
    plan: object | None = None


class JobQueue:
    """A bounded FIFO that tells the position of what it takes, and lets a cancelled job out
    (asyncio.Queue does neither)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[ActiveJob] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def ids(self) -> list[str]:
        """The request ids waiting, first out first."""
        return [item.job.id for item in self._items]

    def full(self) -> bool:
        return len(self._items) >= self.capacity

    def put(self, item: ActiveJob, *, force: bool = False) -> int | None:
        """Append; the 1-based position, or None when the queue is full (unless ``force``)."""
        if len(self._items) >= self.capacity and not force:
            return None
        self._items.append(item)
        self._ready.set()
        return len(self._items)

    def remove(self, item: ActiveJob) -> bool:
        try:
            self._items.remove(item)
        except ValueError:
            return False
        return True

    async def get(self) -> ActiveJob:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class BoundedMap:
    """A ``str -> str`` map that forgets its oldest entries beyond ``capacity``.

    Remembers ids (request ids seen this session; cancellations that came before their
    request, with the pubkey that asked) without growing with hostile traffic.
    """

    def __init__(self, capacity: int) -> None:
        self._items: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    def add(self, key: str, value: str = "") -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def pop(self, key: str) -> str | None:
        return self._items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._items
