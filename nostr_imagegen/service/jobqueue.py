"""The runner's in-memory bookkeeping: the jobs it holds and the ids it has seen (the queue
they wait in is ``service.scheduler``).

None of it survives a restart, and none of it has to: the ledger is the record. These only
answer the questions of the hot path without asking the ledger: is this job in hand, was
this id seen?
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from nostr_imagegen.imagejob.model import ImageJob

__all__ = ["ActiveJob", "BoundedMap"]


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
