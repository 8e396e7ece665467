"""What the runner says, signed and published: feedback, answers, and their retries.

Two kinds of message leave the runner:

* progress feedback (``processing``, ``payment-required``): published once and not stored;
  a lost one costs nothing;
* answers, the last word on a job (a kind 6100 result plus a ``success`` feedback, or one
  ``error`` feedback): stored in the ledger first, then published to the pool's relays plus
  the request's ``relays`` (``send_answer``). The job counts as answered once some relay
  acknowledged the first event; until then ``retry_unacknowledged`` sends it again after
  5 s, 10 s, 20 s... at most 5 minutes apart.

Every feedback names the relay the request came from and expires (NIP-40)::

    ["e", "<request id>", "wss://relay.the.request.came.from"]
    ["status", "processing", "queued: position 2"]
    ["expiration", "<now + feedback_expiration_s>"]
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from nostr_imagegen.errors import LedgerError, NostrImagegenError
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.imagejob.results import ImageLink, JobStatus, build_feedback, build_result
from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.kinds import FEEDBACK_KIND
from nostr_imagegen.nostr.signer import Signer
from nostr_imagegen.nostr.urls import RELAY_SCHEMES, is_url
from nostr_imagegen.service.background import BackgroundTasks, LedgerThread
from nostr_imagegen.service.jobqueue import ActiveJob
from nostr_imagegen.service.ledger import JobRecord, Ledger
from nostr_imagegen.service.netguard import is_public_address, parse_ip
from nostr_imagegen.service.options import RunnerOptions, RunnerStats
from nostr_imagegen.service.seams import FeedbackHook, RelayPoolLike, ResultHook

__all__ = ["Outbox", "relay_allowed"]

logger = logging.getLogger(__name__)

#: Unacknowledged answers are sent again after 5 s, 10 s, 20 s... up to this.
_MAX_REPUBLISH_BACKOFF_S = 300.0
#: A relay hint longer than this is left out of our events.
_MAX_HINT_CHARS = 2048


class Outbox:
    """Signs with the provider's keys and publishes through the pool (see the module doc).

    ``parse`` turns a stored request back into its job, for the ``on_result`` hook of an
    answer republished after a restart.
    """

    def __init__(
        self,
        *,
        keys: Signer,
        pool: RelayPoolLike,
        ledger: Ledger,
        ledger_io: LedgerThread,
        tasks: BackgroundTasks,
        options: RunnerOptions,
        stats: RunnerStats,
        parse: Callable[[Event], ImageJob],
        on_result: ResultHook | None = None,
        on_feedback: FeedbackHook | None = None,
    ) -> None:
        self._keys = keys
        self._pool = pool
        self._ledger = ledger
        self._ledger_io = ledger_io
        self._tasks = tasks
        self._options = options
        self._stats = stats
        self._parse = parse
        self._on_result = on_result
        self._on_feedback = on_feedback
        #: Answers being published now (request ids): never twice in parallel.
        self._publishing: set[str] = set()
        #: Retries: request id -> (tries so far, monotonic time of the next try).
        self._retries: dict[str, tuple[int, float]] = {}

    # -- building and signing -------------------------------------------------------------

    def sign(self, template: UnsignedEvent) -> Event:
        return sign_event(template, self._keys)

    def feedback(
        self,
        request: Event | ImageJob,
        status: JobStatus,
        relay: str | None,
        *,
        now: int | None = None,
        **fields: Any,
    ) -> Event:
        """A signed kind 7000 about ``request``; ``fields`` go to ``build_feedback``
        (``message``, ``progress``, ``queue_position``, ``amount_msats``, ``bolt11``)."""
        now = int(time.time()) if now is None else now
        return self.sign(
            build_feedback(
                request,
                status,
                relay_hint=_hint(relay),
                expiration=_later(now, self._options.feedback_expiration_s),
                keys=self._keys,
                **fields,
            )
        )

    def result(
        self,
        job: ImageJob,
        links: Sequence[ImageLink],
        relay: str | None,
        *,
        amount_msats: int | None,
        bolt11: str | None = None,
        now: int,
    ) -> Event:
        """The signed kind 6100 result: the image URLs, an ``imeta`` tag for each."""
        return self.sign(
            build_result(
                job,
                links,
                keys=self._keys,
                amount_msats=amount_msats,
                bolt11=bolt11,
                relay_hint=_hint(relay),
                expiration=_later(now, self._options.result_expiration_s),
            )
        )

    # -- publishing -----------------------------------------------------------------------

    async def progress(self, active: ActiveJob, status: JobStatus, **fields: Any) -> Event | None:
        """Publish a progress-type feedback (not stored: only answers are); the event, or
        None when it could not be built."""
        try:
            event = self.feedback(active.job, status, active.relay, **fields)
        except NostrImagegenError as exc:
            logger.warning("cannot build %s feedback: %s", status.value, exc)
            return None
        await self.publish(event, active.reply_relays)
        await _call_hook(self._on_feedback, event)
        return event

    async def publish(self, event: Event, reply_relays: Sequence[str] = ()) -> bool:
        """Publish to the pool's relays plus ``reply_relays``; did any relay accept it?"""
        try:
            outcome = await self._pool.publish(
                event, relays=list(reply_relays) or None, timeout_s=self._options.publish_timeout_s
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("publishing %.12s failed: %s", event.id, exc)
            return False
        return _acknowledged(outcome)

    def send_answer(
        self,
        request_id: str,
        answer: Sequence[Event],
        reply_relays: Sequence[str],
        *,
        job: ImageJob | None = None,
    ) -> None:
        """Publish a stored answer in the background (the worker goes on to the next job)."""
        if request_id in self._publishing:
            return
        # Claimed synchronously, so the retry loop cannot publish the same answer in parallel.
        self._publishing.add(request_id)
        self._tasks.spawn(self._publish_answer(request_id, answer, reply_relays, job=job), "answer")

    async def _publish_answer(
        self,
        request_id: str,
        answer: Sequence[Event],
        reply_relays: Sequence[str],
        *,
        job: ImageJob | None = None,
    ) -> bool:
        """Publish a stored answer; mark it answered once some relay took the first event.

        The caller has put ``request_id`` in ``_publishing``; it is taken out at the end.
        """
        try:
            delivered = False
            for position, event in enumerate(answer):
                accepted = await self.publish(event, reply_relays)
                if position == 0:
                    delivered = accepted
                    if not delivered:
                        break
                if event.kind == FEEDBACK_KIND:
                    await _call_hook(self._on_feedback, event)
            if not delivered:
                logger.warning("answer to %.12s not acknowledged yet; will retry", request_id)
                return False
            self._retries.pop(request_id, None)
            await self._ledger_io(self._ledger.mark_answered, request_id)
            if job is not None and answer[0].kind != FEEDBACK_KIND:
                await _call_hook(self._on_result, job, answer[0])
            return True
        finally:
            self._publishing.discard(request_id)

    def republish(self, record: JobRecord) -> None:
        """Send a stored answer again, as it is (same event ids)."""
        job: ImageJob | None = None
        if record.answer and record.answer[0].kind != FEEDBACK_KIND:
            with contextlib.suppress(NostrImagegenError):
                job = self._parse(record.request)
        self._stats.republished += 1
        self.send_answer(record.request_id, record.answer, record.reply_relays, job=job)

    async def retry_unacknowledged(self) -> None:
        """Forever: answers stored but not acknowledged (relays down) are sent again."""
        interval = self._options.republish_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                records = await self._ledger_io(self._ledger.unanswered)
            except LedgerError as exc:
                logger.warning("outbox check failed: %s", exc)
                continue
            now = time.monotonic()
            for record in records:
                request_id = record.request_id
                if request_id in self._publishing:
                    continue
                tries, due = self._retries.get(request_id, (0, now))
                if now < due:
                    continue
                backoff = min(_MAX_REPUBLISH_BACKOFF_S, interval * 2**tries)
                self._retries[request_id] = (tries + 1, now + backoff)
                self.republish(record)

    # -- where answers go -----------------------------------------------------------------

    def reply_relays(self, job: ImageJob) -> tuple[str, ...]:
        """The request's ``relays`` we are willing to connect to (bounded, no private hosts)."""
        chosen: list[str] = []
        for url in job.relays:
            if len(chosen) >= self._options.max_reply_relays:
                break
            if relay_allowed(url, allow_private=self._options.allow_private_relays):
                chosen.append(url)
            else:
                logger.info("not publishing to the request's relay %s", url[:100])
        return tuple(chosen)


def relay_allowed(url: str, *, allow_private: bool = False) -> bool:
    """A first, cheap filter on a stranger's relay URL: ``wss://`` to a public name or address
    (``ws://`` and private hosts too with ``allow_private``). The pool checks again where it
    connects (every resolved address public, connection pinned to it)."""
    if not is_url(url, RELAY_SCHEMES):
        return False
    parts = urlsplit(url)
    host = parts.hostname
    if not host or parts.username or parts.password:
        return False
    if allow_private:
        return True
    if parts.scheme != "wss":
        return False  # plain ws only where an operator allowed private relays
    literal = parse_ip(host)
    if literal is not None:
        return is_public_address(literal)
    name = host.lower().rstrip(".")
    return name != "localhost" and not name.endswith((".localhost", ".local", ".internal"))


async def _call_hook(hook: Callable[..., Any] | None, *args: Any) -> None:
    """Call an operator's hook (sync or async); its failure is logged, never ours."""
    if hook is None:
        return
    try:
        value = hook(*args)
        if inspect.isawaitable(value):
            await value
    except Exception:
        logger.exception("hook %r failed", hook)


def _acknowledged(outcome: Any) -> bool:
    """Did any relay accept the event? Reads ``PublishResult.ok`` (or a plain bool)."""
    if isinstance(outcome, bool):
        return outcome
    return bool(getattr(outcome, "ok", False))


def _hint(relay: str | None) -> str | None:
    """The relay a request came from, as the hint in our ``e`` tag (when it looks like one)."""
    if relay and is_url(relay, RELAY_SCHEMES, max_chars=_MAX_HINT_CHARS):
        return relay
    return None


def _later(now: int, seconds: int | None) -> int | None:
    """The NIP-40 ``expiration`` time ``seconds`` from ``now`` (None: does not expire)."""
    return None if seconds is None else now + seconds
