"""Job chaining (NIP-90 appendix 1): inputs that are earlier jobs' results or other events.

    ["i", "<request id of an earlier job>", "job", "<relay>"]   # its result's image: img2img
    ["i", "<event id>", "event", "<relay>"]                     # that note's text: the prompt

``ChainResolver`` is the runner's ``InputResolver``. The request parser is synchronous, so
resolution has two halves:

1. ``resolver(job_input)`` (called while parsing) returns the resolved input when it is
   known; otherwise it raises ``InputPending``, and the runner answers `processing`
   ("waiting for the result of job ...") and awaits ``pending.wait()``;
2. ``wait`` subscribes on the runner's relay pool to the referenced event (``ids``) and, for a
   ``job`` input, to results naming it (kind 6100 with ``#e``); the runner hands every event
   of the pool to ``offer`` first. The first valid one is kept (bounded cache) and the
   request is parsed again, this time resolving at once. Nothing within ``wait_s``: the
   job ends with an `error` saying so.

A ``job`` input takes the first valid kind 6100 result seen, from any provider: its signature
checked, not encrypted (we could not read it), with an http(s) image link. That link becomes
the job's ``url`` input, fetched later by the worker with the safe fetcher (``service.fetch``:
size, time, pixel and address limits), like any other input image. A result's own event id
works too. An ``event`` input takes the referenced event's content as prompt text; the
parser's prompt bounds apply. The relay hint is not used: events are asked of our relays.

    [chaining]
    enabled = true
    wait_s = 120.0           # how long a chained job waits for its input
    max_waiting = 16         # chained jobs waiting at the same time; more get `error`
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field

from nostr_imagegen.errors import EventError, JobRejected, NostrImagegenError
from nostr_imagegen.imagejob.model import InputType, JobInput
from nostr_imagegen.imagejob.results import parse_result
from nostr_imagegen.imagejob.tags import clip_tag
from nostr_imagegen.nostr.event import Event, verify_event
from nostr_imagegen.nostr.hexkeys import is_hex64
from nostr_imagegen.nostr.kinds import IMAGE_RESULT_KIND
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.service.seams import RelayPoolLike

__all__ = ["ChainResolver", "ChainingConfig", "InputPending"]

logger = logging.getLogger(__name__)


class ChainingConfig(BaseModel):
    """``[chaining]`` (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    wait_s: float = Field(default=120.0, gt=0.0, le=24 * 3600.0)
    max_waiting: int = Field(default=16, ge=1, le=60)


class InputPending(Exception):
    """Raised while parsing: ``job_input`` is not resolved yet; ``await wait()`` fetches it
    and returns None when it is now known, or the reason it cannot be."""

    def __init__(self, job_input: JobInput, wait: Callable[[], Awaitable[str | None]]) -> None:
        super().__init__(f"waiting for the {job_input.type.value} input {job_input.data}")
        self.job_input = job_input
        self.wait = wait

    def waiting_message(self) -> str:
        """What the `processing` feedback says meanwhile."""
        if self.job_input.type is InputType.JOB:
            return f"waiting for the result of job {self.job_input.data}"
        return f"waiting for event {self.job_input.data}"


def _key(job_input: JobInput) -> tuple[str, str]:
    return job_input.type.value, job_input.data.lower()


class ChainResolver:
    """Resolves `job` and `event` inputs from the relays of ``pool`` (see the module doc)."""

    def __init__(
        self,
        pool: RelayPoolLike,
        *,
        wait_s: float = 120.0,
        max_waiting: int = 16,
        cache_size: int = 1024,
    ) -> None:
        self._pool = pool
        self.wait_s = wait_s
        self.max_waiting = max_waiting
        self._cache_size = cache_size
        self._resolved: OrderedDict[tuple[str, str], JobInput] = OrderedDict()
        #: Inputs being waited for -> the future their first valid event completes.
        self._waiting: dict[tuple[str, str], asyncio.Future[JobInput]] = {}
        self._waiters: dict[tuple[str, str], int] = {}
        self._serial = 0

    @property
    def waiting(self) -> int:
        """Inputs waited for now."""
        return len(self._waiting)

    def __call__(self, job_input: JobInput) -> JobInput:
        if job_input.type not in (InputType.JOB, InputType.EVENT):
            return job_input
        if not is_hex64(job_input.data.lower()):
            raise JobRejected(
                f"a {job_input.type.value} input must be a 64-hex event id",
                clip_tag(job_input.to_tag()),
            )
        key = _key(job_input)
        known = self._resolved.get(key)
        if known is not None:
            self._resolved.move_to_end(key)
            return known
        raise InputPending(job_input, lambda: self.wait(job_input))

    # -- waiting ------------------------------------------------------------------------

    async def wait(self, job_input: JobInput) -> str | None:
        """Fetch ``job_input`` from the relays, waiting at most ``wait_s``. None when it is
        resolved now (parse again), else the reason for the customer."""
        key = _key(job_input)
        if key in self._resolved:
            return None
        future = self._waiting.get(key)
        if future is None:
            if len(self._waiting) >= self.max_waiting:
                return "too many chained jobs are waiting for their inputs; try again later"
            future = asyncio.get_running_loop().create_future()
            self._waiting[key] = future
            self._waiters[key] = 0
            subscription = await self._subscribe(job_input)
            future.add_done_callback(lambda done: self._end(key, subscription, done))
        self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            # asyncio.wait neither raises nor cancels on timeout: other jobs may wait for the
            # same input with their own deadlines.
            await asyncio.wait([future], timeout=self.wait_s)
        finally:
            if key in self._waiters:  # not yet ended by an arrival
                self._waiters[key] -= 1
            if not self._waiters.get(key) and not future.done():
                # Nobody waits any more: forget it now (a new job asks afresh), and the
                # done callback ends the subscription.
                self._waiting.pop(key, None)
                self._waiters.pop(key, None)
                future.cancel()
        if future.done() and not future.cancelled():
            return None
        what = "a result of job" if job_input.type is InputType.JOB else "event"
        return f"{what} {job_input.data} did not appear within {self.wait_s:g} s"

    async def _subscribe(self, job_input: JobInput) -> str:
        self._serial += 1
        subscription = f"chain-{self._serial}"
        event_id = job_input.data.lower()
        filters = [Filter(ids=[event_id])]
        if job_input.type is InputType.JOB:
            filters.append(Filter(kinds=[IMAGE_RESULT_KIND], tags={"e": [event_id]}))
        await self._pool.subscribe(subscription, filters)
        return subscription

    def _end(
        self, key: tuple[str, str], subscription: str, future: asyncio.Future[JobInput]
    ) -> None:
        if self._waiting.get(key) is future:  # not a newer wait for the same input
            self._waiting.pop(key, None)
            self._waiters.pop(key, None)
        unsubscribe = getattr(self._pool, "unsubscribe", None)
        if unsubscribe is not None:
            task = asyncio.ensure_future(unsubscribe(subscription))
            task.add_done_callback(_log_failure)

    # -- arrivals -----------------------------------------------------------------------

    def offer(self, event: Event) -> bool:
        """An event from the pool: True when it resolved an awaited input. The caller
        handles the event as usual either way."""
        if not self._waiting:
            return False
        matched = False
        for key, future in list(self._waiting.items()):
            kind, wanted = key
            if future.done() or not self._answers(kind, wanted, event):
                continue
            resolved = self._resolve(kind, wanted, event)
            if resolved is not None:
                matched = True
                self._remember(key, resolved)
                future.set_result(resolved)
        return matched

    @staticmethod
    def _answers(kind: str, wanted: str, event: Event) -> bool:
        if kind == InputType.EVENT.value:
            return event.id == wanted
        # A `job` input names the earlier request: its result tags it (or is it, by id).
        if event.kind != IMAGE_RESULT_KIND:
            return False
        return event.id == wanted or any(
            len(tag) > 1 and tag[1] == wanted for tag in event.tags_named("e")
        )

    def _resolve(self, kind: str, wanted: str, event: Event) -> JobInput | None:
        """The input ``event`` resolves to, or None (logged) when it cannot serve."""
        try:
            verify_event(event)
        except EventError as exc:
            logger.info("chained input %.12s: bad event %.12s: %s", wanted, event.id, exc)
            return None
        if kind == InputType.EVENT.value:
            return JobInput(data=event.content, type=InputType.TEXT)
        try:
            result = parse_result(event)
        except NostrImagegenError as exc:  # not a result, or encrypted to its customer
            logger.info("chained job %.12s: unusable result %.12s: %s", wanted, event.id, exc)
            return None
        if not result.urls:
            logger.info("chained job %.12s: result %.12s has no image link", wanted, event.id)
            return None
        return JobInput(data=result.urls[0], type=InputType.URL)

    def _remember(self, key: tuple[str, str], resolved: JobInput) -> None:
        self._resolved[key] = resolved
        self._resolved.move_to_end(key)
        while len(self._resolved) > self._cache_size:
            self._resolved.popitem(last=False)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("ending a chaining subscription failed: %s", task.exception())
