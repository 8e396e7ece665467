"""Which queued jobs a free engine runs next: model-aware, batching, without starvation.

The runner's queue. Accepted jobs wait here; each engine slot's worker asks for its next
batch::

    scheduler = Scheduler(slots, SchedulerSettings(), capacity=8)
    position = scheduler.put(active)        # 1-based, for "queued: position N"; None: full
    batch = await scheduler.take(0)         # slot 0 is free: the jobs it runs together next
    scheduler.done(0)                       # slot 0 finished them (or: its next take())

Loading a pipeline costs seconds (SDXL: tens of seconds, and gigabytes of copying); running a
job on a loaded one costs about as much. Taking jobs first in, first out from a mixed stream
of models reloads a pipeline almost every job. So a free slot S picks, in this order:

(a) the oldest job waiting ``max_wait_s`` or longer, whatever its model: the bound on how
    long a job is passed over (no starvation under a skewed mix);
(b) else the oldest job whose model S has loaded (or a job with no model: no affinity);
(c) else the oldest job whose model no other available slot has loaded: S loads it, nobody
    could run it cheaper;
(d) else the oldest job whose model is loaded only on busy slots, once that model has
    ``spill_after`` jobs queued: the backlog is worth a second copy of the model (spill);
    a shorter backlog waits for its slot to come free;

else S waits, woken by a new job, a slot coming free, or the moment a job becomes overdue.
A slot "has" a model when its ``loaded_models()`` says so or the scheduler just handed it a
job of that model (it is loading it now). A job whose slot died (``requeue``) keeps its place
and prefers another slot. ``model_aware = false`` skips (b)-(d): the oldest job first, the
baseline the benchmark compares with.

Batching: the chosen job takes along the oldest queued jobs with an equal ``plan.batch_key``
(same model, LoRAs, sampler, size, steps, guidance: one pipeline call), up to
``S.max_batch(model)``; with fewer than that and ``batch_wait_ms > 0``, S waits that long for
more compatible jobs to arrive (never when the model's ``max_batch`` is 1). A job's plan
(``ActiveJob.plan``) gives its model and key; a job without one runs alone, in FIFO order.

Pure asyncio; the clock and sleep are injected so tests can drive time by hand. One event
loop only: every method runs on the loop's thread.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nostr_imagegen.service.jobqueue import ActiveJob
from nostr_imagegen.service.scaling import SchedulerSettings
from nostr_imagegen.service.slots import EngineSlot

__all__ = ["Scheduler"]

#: With jobs queued but none for this slot, look again this often: a slot's availability and
#: loaded models change without telling the scheduler (a Ray actor restarting).
_RECHECK_S = 1.0


@dataclass(eq=False)
class _Entry:
    active: ActiveJob
    #: When it was queued first (the clock's time): its age, for (a).
    since: float
    #: Arrival order (ties of ``since`` under a frozen test clock).
    order: int
    #: Slots that already failed it (their engine died): tried last.
    avoid: set[int] = field(default_factory=set)

    @property
    def model(self) -> str | None:
        model = getattr(self.active.plan, "model", None)
        return model if isinstance(model, str) else None

    @property
    def batch_key(self) -> Hashable | None:
        key: Hashable | None = getattr(self.active.plan, "batch_key", None)
        return key


class Scheduler:
    """The queue of accepted jobs and the policy that hands them to slots (module doc)."""

    def __init__(
        self,
        slots: Sequence[EngineSlot],
        settings: SchedulerSettings | None = None,
        *,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.capacity = capacity
        self._slots = tuple(slots)
        self._settings = settings if settings is not None else SchedulerSettings()
        self._clock = clock
        self._sleep = sleep
        self._queue: list[_Entry] = []  # arrival order
        self._orders = itertools.count()
        self._busy: set[int] = set()
        #: Slot -> the model of the last batch handed to it (loading it, or loaded).
        self._assigned: dict[int, str] = {}
        #: Slot -> the entries it runs now (for ``requeue``).
        self._running: dict[int, list[_Entry]] = {}
        self._changed = asyncio.Event()

    # -- the queue ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._queue)

    def ids(self) -> list[str]:
        """The request ids waiting, oldest first."""
        return [entry.active.job.id for entry in self._queue]

    def full(self) -> bool:
        return len(self._queue) >= self.capacity

    def put(self, active: ActiveJob, *, force: bool = False) -> int | None:
        """Queue a job; its 1-based position (jobs queued before it, plus one), or None when
        the queue is full (unless ``force``)."""
        if self.full() and not force:
            return None
        self._queue.append(_Entry(active, self._clock(), next(self._orders)))
        self._changed.set()
        return len(self._queue)

    def requeue(self, active: ActiveJob, *, failed_on: int) -> None:
        """Put back a job taken by slot ``failed_on`` whose engine went away: it keeps its
        age and place, and goes to another slot when one can take it. Never refused."""
        entry = next(
            (e for e in self._running.get(failed_on, ()) if e.active is active),
            None,
        )
        if entry is None:
            entry = _Entry(active, self._clock(), next(self._orders))
        else:
            self._running[failed_on].remove(entry)
        entry.avoid.add(failed_on)
        self._assigned.pop(failed_on, None)  # what it held went away with its engine
        self._queue.append(entry)
        self._queue.sort(key=lambda e: e.order)
        self._changed.set()

    def remove(self, active: ActiveJob) -> bool:
        """Take a queued job out (cancelled); False when it is not queued (running)."""
        for index, entry in enumerate(self._queue):
            if entry.active is active:
                del self._queue[index]
                return True
        return False

    # -- the slots ------------------------------------------------------------------------

    def done(self, slot: int) -> None:
        """Slot ``slot`` finished its batch: it is free (``take`` says so too)."""
        self._running.pop(slot, None)
        if slot in self._busy:
            self._busy.discard(slot)
            self._changed.set()

    async def take(self, slot: int) -> list[ActiveJob]:
        """The next batch for slot ``slot`` (free from now on until it is returned): waits
        until the policy gives it one. Cancelling the wait leaves the queue as it was."""
        self.done(slot)
        while True:
            head = self._choose(slot)
            if head is not None:
                break
            await self._wait(self._next_look())
        self._busy.add(slot)
        batch = [head]
        self._queue.remove(head)
        model, key = head.model, head.batch_key
        if model is not None:
            self._assigned[slot] = model
        most = self._slots[slot].max_batch(model) if model is not None and key is not None else 1
        try:
            self._add_compatible(batch, most)
            wait_s = self._settings.batch_wait_ms / 1000.0
            deadline = self._clock() + wait_s
            while len(batch) < most and wait_s > 0 and self._clock() < deadline:
                await self._wait(deadline - self._clock())
                self._add_compatible(batch, most)
        except asyncio.CancelledError:  # shutdown while filling the batch: put them back
            self._queue.extend(batch)
            self._queue.sort(key=lambda e: e.order)
            self._busy.discard(slot)
            raise
        self._running[slot] = batch
        return [entry.active for entry in batch]

    # -- the policy -----------------------------------------------------------------------

    def _choose(self, slot: int) -> _Entry | None:
        if not self._slots[slot].available or not self._queue:
            return None
        candidates = [e for e in self._queue if slot not in e.avoid or not self._others(slot)]
        if not candidates:
            return None
        now = self._clock()
        overdue = [e for e in candidates if now - e.since >= self._settings.max_wait_s]
        if overdue:
            return overdue[0]
        if not self._settings.model_aware:
            return candidates[0]
        mine = self._models_of(slot)
        for entry in candidates:  # (b)
            if entry.model is None or entry.model in mine:
                return entry
        holders = {other: self._models_of(other) for other in self._others(slot)}

        def held_by(entry: _Entry) -> list[int]:
            """The other slots holding its model (not those it failed on)."""
            return [
                other
                for other, models in holders.items()
                if entry.model in models and other not in entry.avoid
            ]

        for entry in candidates:  # (c)
            if not held_by(entry):
                return entry
        backlog: dict[str | None, int] = {}
        for entry in self._queue:
            backlog[entry.model] = backlog.get(entry.model, 0) + 1
        for entry in candidates:  # (d)
            all_busy = all(other in self._busy for other in held_by(entry))
            if all_busy and backlog[entry.model] >= self._settings.spill_after:
                return entry
        return None

    def _others(self, slot: int) -> list[int]:
        """The other slots that can take jobs now."""
        return [i for i, s in enumerate(self._slots) if i != slot and s.available]

    def _models_of(self, slot: int) -> frozenset[str]:
        loaded = self._slots[slot].loaded_models()
        assigned = self._assigned.get(slot)
        return loaded if assigned is None else loaded | {assigned}

    def _add_compatible(self, batch: list[_Entry], most: int) -> None:
        key = batch[0].batch_key
        if key is None:
            return
        for entry in list(self._queue):
            if len(batch) >= most:
                return
            if entry.batch_key == key:
                self._queue.remove(entry)
                batch.append(entry)

    def _next_look(self) -> float | None:
        """How long a slot without a job may sleep: until the next job becomes overdue, at
        most ``_RECHECK_S`` while jobs wait; without end when nothing does. (A job overdue
        already but not for this slot wakes it by other means: a slot coming free.)"""
        if not self._queue:
            return None
        now, bound = self._clock(), self._settings.max_wait_s
        upcoming = [e.since + bound - now for e in self._queue if e.since + bound > now]
        return min([*upcoming, _RECHECK_S])

    async def _wait(self, timeout: float | None) -> None:
        """Until something changed (a job queued, a slot free) or ``timeout`` passed."""
        self._changed.clear()
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._changed.wait())]
        if timeout is not None:
            waits.append(asyncio.ensure_future(self._sleep(timeout)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
