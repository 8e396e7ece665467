"""The job runner: request in, feedback and result out, every step written ahead in the ledger.

The path of one kind 5100 request::

    relay EVENT ─> seen this session? ─> signature ─> `p` names another provider? (ignore)
      ─> ledger.claim (duplicate from another relay / after a restart? drop)
      ─> parse_image_job  (JobRejected -> `error` feedback)
      ─> pricing policy   (amount? `payment-required` + wait for PaymentCheck, or timeout)
      ─> bounded queue    (full? `error`: busy)   ─> `processing` feedback (queue position)
      ─> engine worker: fetch input image ─> Engine.generate in its own thread (step
         progress as rate-limited `processing` feedback; a kind 5 deletion by the customer
         sets the cancel flag) ─> encode
      ─> ledger: generated (bytes kept) ─> upload with fallback ─> build + sign result and
         `success` feedback ─> ledger: uploaded (signed answer stored) ─> publish to the
         request's relays plus ours ─> ledger: published

Any failure of one job (``FetchError``, ``EngineError``, ``UploadError``, a bug) becomes an
`error` feedback for that job; the runner itself keeps going. A restart reads
``Ledger.pending_on_startup()``: stored answers are republished as they are (same event ids),
generated images are uploaded without generating again, unfinished jobs run again (or get an
`error` when they are too old or crashed the service ``max_attempts`` times).

Everything is injected (keys, relay pool, engine, image hosts, ledger, pricing, payment
check, fetcher), so programs can embed the runner piece by piece and tests can drive it with
fakes: see ``examples/embed_runner.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from PIL import Image

from nostr_imagegen.errors import (
    ConfigError,
    EngineError,
    EventError,
    FetchError,
    JobCancelled,
    JobRejected,
    JobSkipped,
    LedgerError,
    NostrImagegenError,
    UploadError,
)
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.imagejob.request import (
    DEFAULT_JOB_LIMITS,
    InputResolver,
    JobLimits,
    is_request_kind,
    parse_image_job,
)
from nostr_imagegen.imagejob.results import (
    ImageLink,
    JobStatus,
    build_feedback,
    build_handler_info,
    build_result,
    parse_cancellation,
)
from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event, verify_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.service.ledger import JobRecord, JobState, Ledger, StoredImage
from nostr_imagegen.service.netguard import is_public_address, parse_ip
from nostr_imagegen.service.options import Announcement, RunnerOptions, RunnerStats
from nostr_imagegen.service.seams import (
    EngineLike,
    FeedbackHook,
    Fetcher,
    GenerationLike,
    PaymentCheck,
    PricingPolicy,
    PublishOutcome,
    RelayPoolLike,
    ResultHook,
)

if TYPE_CHECKING:  # httpx lives behind these; the runner imports them when it uses them
    from nostr_imagegen.service.fetch import FetchPolicy
    from nostr_imagegen.service.upload import ImageHost

__all__ = [
    "Announcement",
    "EngineLike",
    "Fetcher",
    "GenerationLike",
    "JobRunner",
    "PaymentCheck",
    "PricingPolicy",
    "PublishOutcome",
    "RelayPoolLike",
    "RunnerOptions",
    "RunnerStats",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

DELETION_KIND = 5
HANDLER_INFO_KIND = 31990
#: How many request ids are remembered in memory to drop duplicates without the ledger.
_SEEN_CAPACITY = 20_000
#: Cancellations that arrived before their request (relays do not keep order across relays).
_EARLY_CANCEL_CAPACITY = 2_000
#: After the shutdown timeout, how long an interrupted engine gets to notice the flag.
_INTERRUPT_GRACE_S = 10.0
#: The outbox retries an unacknowledged answer after 5 s, 10 s, 20 s... up to this.
_MAX_REPUBLISH_BACKOFF_S = 300.0


# -- in-memory bookkeeping ----------------------------------------------------------------


@dataclass(eq=False)
class _Active:
    """A job this process is working on (waiting for payment, queued or running)."""

    job: ImageJob
    relay: str | None
    reply_relays: tuple[str, ...]
    amount_msats: int | None = None
    bolt11: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    #: Why ``cancel`` was set: "customer" or "shutdown".
    cancel_reason: str | None = None
    waiter: asyncio.Task[None] | None = None


class _JobQueue:
    """A bounded FIFO with positions and removal (asyncio.Queue has neither)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[_Active] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self.capacity

    def put(self, item: _Active, *, force: bool = False) -> int | None:
        """Append; the 1-based position, or None when the queue is full (unless ``force``)."""
        if len(self._items) >= self.capacity and not force:
            return None
        self._items.append(item)
        self._ready.set()
        return len(self._items)

    def remove(self, item: _Active) -> bool:
        try:
            self._items.remove(item)
        except ValueError:
            return False
        return True

    async def get(self) -> _Active:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def position(self, item: _Active) -> int | None:
        for index, queued in enumerate(self._items):
            if queued is item:
                return index + 1
        return None


class _BoundedSet:
    def __init__(self, capacity: int) -> None:
        self._items: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    def add(self, key: str, value: str = "") -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def get(self, key: str) -> str | None:
        return self._items.get(key)

    def pop(self, key: str) -> str | None:
        return self._items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._items


class _Interrupted(Exception):
    """The running job was interrupted by ``stop()``; it stays in the ledger to resume."""


# -- the runner ------------------------------------------------------------------------------


class JobRunner:
    """Serve kind 5100 (and other configured) job requests from a relay pool.

    ``await runner.run()`` serves until ``stop()`` (or cancellation); or ``async with runner:``
    to start it in the background. ``handle_event(relay_url, event)`` feeds one event by hand
    (an embedding program with its own relay code).
    """

    def __init__(
        self,
        *,
        keys: Keys,
        pool: RelayPoolLike,
        engine: EngineLike | Sequence[EngineLike],
        hosts: Sequence[ImageHost],
        ledger: Ledger,
        pricing: PricingPolicy | None = None,
        payment_check: PaymentCheck | None = None,
        fetch_policy: FetchPolicy | None = None,
        fetcher: Fetcher | None = None,
        accepted_kinds: Sequence[int] = (5100,),
        queue_size: int = 8,
        options: RunnerOptions | None = None,
        announcement: Announcement | None = None,
        job_limits: JobLimits = DEFAULT_JOB_LIMITS,
        input_resolver: InputResolver | None = None,
        on_result: ResultHook | None = None,
        on_feedback: FeedbackHook | None = None,
    ) -> None:
        if queue_size < 1:
            raise ConfigError("queue_size must be at least 1")
        if not accepted_kinds or not all(map(is_request_kind, accepted_kinds)):
            raise ConfigError("accepted_kinds must be job request kinds (5000..5999)")
        self.keys = keys
        self.pool = pool
        self.engines: tuple[EngineLike, ...] = (
            tuple(engine) if isinstance(engine, Sequence) else (engine,)
        )
        if not self.engines:
            raise ConfigError("the runner needs at least one engine")
        self.hosts = tuple(hosts)
        self.ledger = ledger
        self.pricing = pricing
        self.payment_check = payment_check
        self.fetch_policy = fetch_policy
        self._fetcher = fetcher
        self.accepted_kinds = tuple(dict.fromkeys(accepted_kinds))
        self.options = options or RunnerOptions()
        self.announcement = announcement
        self.job_limits = job_limits
        self.input_resolver = input_resolver
        self.on_result = on_result
        self.on_feedback = on_feedback
        self.stats = RunnerStats()
        self.queue_size = queue_size

        self._queue: _JobQueue | None = None
        self._active: dict[str, _Active] = {}
        self._seen = _BoundedSet(_SEEN_CAPACITY)
        self._early_cancels = _BoundedSet(_EARLY_CANCEL_CAPACITY)
        self._publishing: set[str] = set()
        #: Outbox retries: request id -> (tries so far, monotonic time of the next try).
        self._retries: dict[str, tuple[int, float]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._services: list[asyncio.Task[None]] = []
        self._running: dict[int, _Active] = {}
        self._executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{i}")
            for i in range(len(self.engines))
        ]
        # One thread for ledger writes: keeps their order and the event loop responsive.
        self._db_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self._started = False
        self._stopping = False
        self._stopped = asyncio.Event()
        self.started_at = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> JobRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Resume unfinished work, subscribe, announce and start the workers. Idempotent."""
        if self._started:
            return
        self._started = True
        self.started_at = int(time.time())
        self._queue = _JobQueue(self.queue_size)
        self._stopped.clear()
        await self._resume_pending()
        for index, engine in enumerate(self.engines):
            self._workers.append(
                asyncio.create_task(self._worker(index, engine), name=f"engine-worker-{index}")
            )
        await self._subscribe()
        self._services.append(asyncio.create_task(self._consume(), name="runner-consume"))
        self._services.append(asyncio.create_task(self._republish_loop(), name="runner-outbox"))
        if self.announcement is not None:
            self._services.append(asyncio.create_task(self._announce_loop(), name="runner-nip89"))
        logger.info(
            "serving kinds %s as %s (queue %d, %d engine worker(s))",
            ",".join(map(str, self.accepted_kinds)),
            self.keys.npub,
            self.queue_size,
            len(self.engines),
        )

    async def run(self) -> None:
        """Start and serve until ``stop()`` is called (from a signal handler, another task)."""
        await self.start()
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        """Ask ``run()`` to return (safe from a signal handler on the loop's thread)."""
        self._stopped.set()

    async def stop(self, timeout_s: float | None = None) -> None:
        """Graceful shutdown: stop taking jobs, let the running one finish within the timeout,
        else interrupt it; unfinished jobs stay in the ledger and resume on the next start."""
        if not self._started or self._stopping:
            self._stopped.set()
            return
        self._stopping = True
        self._stopped.set()
        limit = self.options.shutdown_timeout_s if timeout_s is None else timeout_s
        for task in self._services:
            task.cancel()
        await asyncio.gather(*self._services, return_exceptions=True)
        for active in list(self._active.values()):
            if active.waiter is not None:
                active.waiter.cancel()  # stays payment-required in the ledger
        # Idle workers wait on the queue: cancel them. Busy ones exit after their job.
        busy = {self._workers[index] for index in self._running}
        for worker in self._workers:
            if worker not in busy:
                worker.cancel()
        if busy:
            logger.info("waiting up to %.0f s for %d running job(s)", limit, len(busy))
            _, late = await asyncio.wait(busy, timeout=limit)
            if late:
                for active in self._running.values():
                    active.cancel_reason = "shutdown"
                    active.cancel.set()  # the engine stops at its next step
                _, late = await asyncio.wait(late, timeout=_INTERRUPT_GRACE_S)
            for worker in late:
                # The engine ignored the flag; the job stays `processing` and resumes later.
                worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.options.publish_timeout_s)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)
        self._db_executor.shutdown(wait=True)
        logger.info("runner stopped: %s", self.stats)

    # -- intake -------------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        since = max(0, self.started_at - self.options.lookback_s)
        jobs = Filter(kinds=list(self.accepted_kinds), since=since)
        # Deletions do not tag the provider: every kind 5 from now on, checked against our jobs.
        cancels = Filter(kinds=[DELETION_KIND], since=self.started_at)
        subscribed = self.pool.subscribe(
            "dvm-jobs", [jobs, cancels], lookback_s=self.options.lookback_s
        )
        if inspect.isawaitable(subscribed):
            await subscribed

    async def _consume(self) -> None:
        while True:
            try:
                async for relay_url, event in self.pool.events():
                    if self._stopping:
                        return
                    await self.handle_event(relay_url, event)
                logger.warning("the relay pool's event stream ended")
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("relay event stream failed; reading again in 1 s")
                await asyncio.sleep(1.0)

    async def handle_event(self, relay_url: str | None, event: Event) -> None:
        """Handle one event from a relay: a job request, a cancellation, or something to ignore.

        Never raises (except ``CancelledError``): hostile input is logged and dropped.
        """
        try:
            if event.kind == DELETION_KIND:
                await self._handle_cancellation(event)
            elif event.kind in self.accepted_kinds:
                await self._handle_request(relay_url, event)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("unexpected failure handling event %s", _short(event.id))

    async def _handle_request(self, relay_url: str | None, event: Event) -> None:
        if self._stopping:
            return
        if event.id in self._seen:
            self.stats.duplicates += 1
            return
        try:
            # The pool verifies too; an embedder may not. Before remembering the id: a forged
            # copy (bad sig, same id) must not shadow the real request.
            verify_event(event)
        except EventError as exc:
            logger.info("dropping request with a bad id or signature: %s", exc)
            self.stats.ignored += 1
            return
        self._seen.add(event.id)
        self.stats.received += 1
        if event.created_at < self.started_at - self.options.lookback_s:
            # A relay ignoring `since`, or a replay of an old request.
            logger.debug("ignoring request %s: older than the look-back", _short(event.id))
            self.stats.ignored += 1
            return
        providers = [tag[1] for tag in event.tags_named("p") if len(tag) > 1]
        if providers and self.keys.public_key not in providers:
            self.stats.ignored += 1
            return  # NIP-90: addressed to another provider; not even recorded
        if not await self._db(self.ledger.claim, event, relay=relay_url):
            self.stats.duplicates += 1
            return
        early = self._early_cancels.pop(event.id)
        if early is not None and early == event.pubkey:
            await self._db(
                self.ledger.record_answer, event.id, JobState.CANCELLED, [],
                reason="cancelled by the customer before it arrived",
            )  # fmt: skip
            self.stats.cancelled += 1
            return
        await self._accept(event, relay_url, JobState.RECEIVED)

    async def _accept(self, event: Event, relay_url: str | None, state: JobState) -> None:
        """Parse and route a claimed request (fresh, or resumed from ``state`` at startup)."""
        try:
            job = parse_image_job(
                event,
                provider=self.keys,
                accepted_kinds=self.accepted_kinds,
                input_resolver=self.input_resolver,
                limits=self.job_limits,
            )
        except JobSkipped as exc:
            self.stats.ignored += 1
            await self._db(
                self.ledger.record_answer, event.id, JobState.REJECTED, [],
                reason=f"ignored: {exc}",
            )  # fmt: skip
            return
        except JobRejected as exc:
            self.stats.rejected += 1
            await self._answer_error(event, relay_url, str(exc), JobState.REJECTED)
            return
        try:
            self._check_plan(job)
        except JobRejected as exc:
            self.stats.rejected += 1
            await self._answer_error(job, relay_url, str(exc), JobState.REJECTED)
            return
        reply_relays = self._reply_relays(job)
        active = _Active(job=job, relay=relay_url, reply_relays=reply_relays)
        if state is JobState.RECEIVED:
            await self._db(
                self.ledger.transition, job.id, JobState.ACCEPTED, reply_relays=reply_relays
            )
            state = JobState.ACCEPTED
        amount = self._price(job)
        if isinstance(amount, str):
            self.stats.rejected += 1
            await self._answer_error(job, relay_url, amount, JobState.REJECTED, active)
            return
        active.amount_msats = amount
        self._active[job.id] = active
        if (
            amount
            and self.payment_check is not None
            and state in (JobState.ACCEPTED, JobState.PAYMENT_REQUIRED)
        ):
            waiting = sum(1 for a in self._active.values() if a.waiter is not None)
            if waiting >= self.options.max_payment_waits:
                self.stats.busy += 1
                await self._answer_error(
                    job, relay_url, "the service is busy; try again later", JobState.FAILED, active
                )
                return
            active.waiter = self._spawn(self._await_payment(active, state), name="payment")
            return
        # A resumed job was accepted before the restart: it does not count against the limit.
        await self._enqueue(active, force=state is not JobState.ACCEPTED)

    def _check_plan(self, job: ImageJob) -> None:
        """Reject what the engine cannot serve (model, size, steps...) before queueing or
        asking for payment. ``Engine.plan`` is cheap: nothing is loaded."""
        plan = getattr(self.engines[0], "plan", None)
        if plan is not None:
            plan(job)

    def _price(self, job: ImageJob) -> int | str | None:
        """The amount to charge (None: free), or a rejection reason."""
        if self.pricing is None:
            return None
        amount = self.pricing(job)
        if not amount:
            return None
        if job.bid is not None and job.bid.max_msats < amount:
            return f"this job costs {amount} msats; the request bids at most {job.bid.max_msats}"
        return int(amount)

    async def _await_payment(self, active: _Active, state: JobState) -> None:
        job, check = active.job, self.payment_check
        assert check is not None
        assert active.amount_msats is not None
        try:
            if state is not JobState.PAYMENT_REQUIRED:
                await self._db(
                    self.ledger.transition, job.id, JobState.PAYMENT_REQUIRED,
                    amount_msats=active.amount_msats,
                )  # fmt: skip
            bolt11 = await asyncio.wait_for(
                check.invoice(job, active.amount_msats), self.options.publish_timeout_s
            )
            active.bolt11 = bolt11
            await self._feedback(
                active,
                JobStatus.PAYMENT_REQUIRED,
                amount_msats=active.amount_msats,
                bolt11=bolt11,
            )
            paid = await asyncio.wait_for(
                check.wait_paid(job, active.amount_msats, bolt11), self.options.payment_timeout_s
            )
        except asyncio.CancelledError:
            if active.cancel_reason == "customer":
                await self._record_cancelled(active)
            else:
                self._active.pop(job.id, None)  # shutdown: stays payment-required
            raise
        except TimeoutError:
            await self._answer_error(
                job, active.relay, "payment was not received in time", JobState.FAILED, active
            )
            return
        except Exception as exc:
            logger.exception("payment check failed for %s", _short(job.id))
            await self._answer_error(
                job, active.relay, f"payment could not be checked: {_reason(exc)}",
                JobState.FAILED, active,
            )  # fmt: skip
            return
        finally:
            active.waiter = None
        if not paid:
            await self._answer_error(
                job, active.relay, "payment was not received", JobState.FAILED, active
            )
            return
        await self._enqueue(active)

    async def _enqueue(self, active: _Active, *, force: bool = False) -> None:
        assert self._queue is not None
        job = active.job
        if self._stopping:
            self._active.pop(job.id, None)  # stays in the ledger; resumed on the next start
            return
        if not force and self._queue.full():
            await self._answer_busy(active)
            return
        # Write-ahead: the ledger says `queued` before a worker can see the job.
        await self._db(self.ledger.transition, job.id, JobState.QUEUED)
        if self._stopping:
            self._active.pop(job.id, None)
            return
        position = self._queue.put(active, force=force)
        if position is None:  # filled up while the ledger was written
            await self._answer_busy(active)
            return
        if position - 1 + len(self._running) > 0:  # it has to wait: say where it stands
            self._spawn(
                self._feedback(active, JobStatus.PROCESSING, queue_position=position),
                name="feedback",
            )

    async def _answer_busy(self, active: _Active) -> None:
        assert self._queue is not None
        self.stats.busy += 1
        await self._answer_error(
            active.job,
            active.relay,
            f"the service is busy ({self._queue.capacity} jobs waiting); try again later",
            JobState.FAILED,
            active,
        )

    # -- cancellation ---------------------------------------------------------------------------

    async def _handle_cancellation(self, event: Event) -> None:
        try:
            verify_event(event)
            cancellation = parse_cancellation(event)
        except EventError:
            return
        for request_id in cancellation.request_ids:
            active = self._active.get(request_id)
            if active is None:
                if request_id not in self._seen:
                    self._early_cancels.add(request_id, cancellation.pubkey)
                continue
            if not cancellation.cancels(active.job):
                logger.info("ignoring a deletion of %s by someone else", _short(request_id))
                continue
            await self._cancel(active)

    async def _cancel(self, active: _Active) -> None:
        assert self._queue is not None
        active.cancel_reason = "customer"
        active.cancel.set()
        logger.info("job %s cancelled by the customer", _short(active.job.id))
        if active.waiter is not None:
            active.waiter.cancel()
        elif self._queue.remove(active):
            await self._record_cancelled(active)
        # A running job sees the flag between two steps (or before publishing).

    async def _record_cancelled(self, active: _Active) -> None:
        self._active.pop(active.job.id, None)
        self.stats.cancelled += 1
        try:
            await self._db(
                self.ledger.record_answer, active.job.id, JobState.CANCELLED, [],
                reason="cancelled by the customer",
            )  # fmt: skip
        except LedgerError as exc:
            logger.warning("could not record the cancellation of %s: %s", active.job.id, exc)

    # -- the engine worker ----------------------------------------------------------------------

    async def _worker(self, index: int, engine: EngineLike) -> None:
        assert self._queue is not None
        while not self._stopping:
            active = await self._queue.get()
            if self._stopping:
                self._active.pop(active.job.id, None)  # still queued in the ledger
                return
            if active.cancel.is_set():
                # Cancelled between leaving the queue and reaching here.
                await self._record_cancelled(active)
                continue
            self._running[index] = active
            try:
                await self._process(index, engine, active)
            except _Interrupted:
                logger.info("job %s interrupted by shutdown; it resumes on restart", active.job.id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: still answer this job and keep serving
                logger.exception("job %s failed unexpectedly", _short(active.job.id))
                await self._answer_error(
                    active.job,
                    active.relay,
                    f"internal error: {_reason(exc)}",
                    JobState.FAILED,
                    active,
                )
            finally:
                self._running.pop(index, None)

    async def _process(self, index: int, engine: EngineLike, active: _Active) -> None:
        job = active.job
        loop = asyncio.get_running_loop()
        await self._db(self.ledger.transition, job.id, JobState.PROCESSING)
        self._spawn(self._feedback(active, JobStatus.PROCESSING, message="generating"), "feedback")
        try:
            init_image = await self._fetch(job.image_url) if job.image_url else None
        except FetchError as exc:
            await self._fail(active, f"input image: {exc}")
            return

        progress = self._progress_callback(active, loop)
        try:
            generated = await loop.run_in_executor(
                self._executors[index],
                functools.partial(
                    engine.generate,
                    job,
                    init_image=init_image,
                    progress=progress,
                    cancel=active.cancel,
                ),
            )
            if active.cancel.is_set():
                raise JobCancelled("cancelled after the last step")
            encoded = await loop.run_in_executor(
                self._executors[index], self._encode, job, generated
            )
        except JobCancelled:
            await self._after_cancel(active)
            return
        except JobRejected as exc:  # e.g. an output type the encoder does not write
            await self._answer_error(job, active.relay, str(exc), JobState.REJECTED, active)
            return
        except EngineError as exc:
            await self._fail(active, str(exc))
            return
        await self._db(self.ledger.record_generated, job.id, encoded)
        if active.cancel.is_set():
            await self._after_cancel(active)
            return
        await self._deliver(active, encoded)

    def _progress_callback(
        self, active: _Active, loop: asyncio.AbstractEventLoop
    ) -> Callable[[int, int], None]:
        interval = self.options.progress_interval_s
        last = [time.monotonic()]  # the "generating" feedback just went out

        def progress(step: int, total: int) -> None:  # called in the engine's thread
            now = time.monotonic()
            if total <= 0 or now - last[0] < interval or step >= total:
                return
            last[0] = now
            fraction = min(max(step / total, 0.0), 1.0)
            loop.call_soon_threadsafe(
                self._spawn,
                self._feedback(
                    active, JobStatus.PROCESSING, message=f"step {step}/{total}", progress=fraction
                ),
                "progress",
            )

        return progress

    async def _after_cancel(self, active: _Active) -> None:
        if active.cancel_reason == "shutdown":
            with contextlib.suppress(LedgerError):
                await self._db(
                    self.ledger.transition, active.job.id, JobState.QUEUED,
                    detail="interrupted by shutdown", refund_attempt=True,
                )  # fmt: skip
            self._active.pop(active.job.id, None)
            raise _Interrupted
        await self._record_cancelled(active)

    def _encode(self, job: ImageJob, generated: GenerationLike) -> list[StoredImage]:
        from nostr_imagegen.engine.encode import encode_image

        mime = job.output or self.options.default_output
        metadata: dict[str, str] | None = None
        if self.options.embed_metadata and job.encryption is None:
            metadata = {"prompt": job.prompt, "seed": str(generated.seed), "model": generated.model}
            if job.negative_prompt:
                metadata["negative_prompt"] = job.negative_prompt
        stored = []
        for image in generated.images:
            encoded = encode_image(image, mime, metadata=metadata, quality=self.options.quality)
            stored.append(
                StoredImage(
                    mime=encoded.mime,
                    sha256=encoded.sha256,
                    width=encoded.width,
                    height=encoded.height,
                    size_bytes=len(encoded.data),
                    data=encoded.data,
                )
            )
        if not stored:
            raise EngineError("the engine returned no image")
        return stored

    async def _fetch(self, url: str) -> Image.Image:
        if self._fetcher is not None:
            return await self._fetcher(url)
        from nostr_imagegen.service.fetch import FetchPolicy, fetch_image

        policy = self.fetch_policy if self.fetch_policy is not None else FetchPolicy()
        fetched = await fetch_image(url, policy=policy)
        return fetched.image

    # -- delivery -----------------------------------------------------------------------------

    async def _deliver(self, active: _Active, images: Sequence[StoredImage]) -> None:
        """Upload stored images, sign the answer, store it, publish it."""
        job = active.job
        from nostr_imagegen.service.upload import upload_with_fallback

        links: list[ImageLink] = []
        try:
            for image in images:
                assert image.data is not None
                uploaded = await upload_with_fallback(
                    self.hosts, image.data, mime=image.mime, sha256=image.sha256
                )
                # A NIP-96 host may re-encode the file: describe what it serves, and leave
                # the dimensions out when the bytes are no longer ours.
                same = uploaded.sha256 == image.sha256
                links.append(
                    ImageLink(
                        url=uploaded.url,
                        mime=uploaded.mime,
                        sha256=uploaded.sha256,
                        width=image.width if same else None,
                        height=image.height if same else None,
                        size_bytes=uploaded.size,
                    )
                )
        except UploadError as exc:
            await self._fail(active, f"the image could not be stored: {exc}")
            return
        if active.cancel.is_set() and active.cancel_reason == "customer":
            await self._record_cancelled(active)
            return
        now = int(time.time())
        result = self._sign(
            build_result(
                job,
                links,
                keys=self.keys,
                amount_msats=active.amount_msats if self.payment_check is None else None,
                relay_hint=_hint(active.relay),
                expiration=_later(now, self.options.result_expiration_s),
            )
        )
        success = self._sign(
            build_feedback(
                job,
                JobStatus.SUCCESS,
                relay_hint=_hint(active.relay),
                expiration=_later(now, self.options.feedback_expiration_s),
                keys=self.keys,
            )
        )
        await self._db(
            self.ledger.record_uploaded, job.id, [link.url for link in links], [result, success]
        )
        self._active.pop(job.id, None)
        self.stats.succeeded += 1
        self._start_publish(job.id, (result, success), active.reply_relays, job=job)

    def _start_publish(
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
        # Claimed synchronously, so the outbox loop cannot publish the same answer in parallel.
        self._publishing.add(request_id)
        self._spawn(self._publish_answer(request_id, answer, reply_relays, job=job), "answer")

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
            targets = self._targets(reply_relays)
            delivered = False
            for position, event in enumerate(answer):
                accepted = await self._publish(event, targets)
                if position == 0:
                    delivered = accepted
                    if not delivered:
                        break
                if event.kind == 7000:
                    await self._call_hook(self.on_feedback, event)
            if not delivered:
                logger.warning("answer to %s not acknowledged yet; will retry", _short(request_id))
                return False
            self._retries.pop(request_id, None)
            await self._db(self.ledger.mark_answered, request_id)
            if job is not None and answer[0].kind != 7000:
                await self._call_hook(self.on_result, job, answer[0])
            return True
        finally:
            self._publishing.discard(request_id)

    async def _publish(self, event: Event, targets: Sequence[str] | None) -> bool:
        try:
            outcome = await self.pool.publish(
                event, relays=targets, timeout_s=self.options.publish_timeout_s
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("publishing %s failed: %s", _short(event.id), exc)
            return False
        return _acknowledged(outcome)

    @staticmethod
    def _targets(reply_relays: Sequence[str]) -> list[str] | None:
        """Relays besides the pool's own: the request's ``relays`` that passed the checks."""
        return list(reply_relays) or None

    def _reply_relays(self, job: ImageJob) -> tuple[str, ...]:
        """The request's ``relays`` we are willing to connect to (bounded, no private hosts)."""
        chosen: list[str] = []
        for url in job.relays:
            if len(chosen) >= self.options.max_reply_relays:
                break
            if self._relay_allowed(url):
                chosen.append(url)
            else:
                logger.info("not publishing to the request's relay %s", url[:100])
        return tuple(chosen)

    def _relay_allowed(self, url: str) -> bool:
        """A first, cheap filter on a stranger's relay URL. The pool checks again where it
        connects (every resolved address public, connection pinned to it)."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            return False
        if parts.scheme not in ("wss", "ws") or not host or parts.username or parts.password:
            return False
        if self.options.allow_private_relays:
            return True
        if parts.scheme != "wss":
            return False  # plain ws only where an operator allowed private relays
        literal = parse_ip(host)
        if literal is not None:
            return is_public_address(literal)
        name = host.lower().rstrip(".")
        return name != "localhost" and not name.endswith((".localhost", ".local", ".internal"))

    # -- answers ------------------------------------------------------------------------------

    async def _fail(self, active: _Active, reason: str) -> None:
        self.stats.failed += 1
        await self._answer_error(active.job, active.relay, reason, JobState.FAILED, active)

    async def _answer_error(
        self,
        request: Event | ImageJob,
        relay: str | None,
        reason: str,
        state: JobState,
        active: _Active | None = None,
    ) -> None:
        """Store, then publish, an `error` feedback; the job ends in ``state``."""
        request_id = request.id
        self._active.pop(request_id, None)
        if self._queue is not None and active is not None:
            self._queue.remove(active)
        answer: list[Event] = []
        try:
            answer.append(
                self._sign(
                    build_feedback(
                        request,
                        JobStatus.ERROR,
                        message=reason,
                        relay_hint=_hint(relay),
                        expiration=_later(int(time.time()), self.options.feedback_expiration_s),
                        keys=self.keys,
                    )
                )
            )
        except NostrImagegenError as exc:
            logger.warning("cannot build error feedback for %s: %s", _short(request_id), exc)
        logger.info("job %s %s: %s", _short(request_id), state.value, reason)
        try:
            await self._db(self.ledger.record_answer, request_id, state, answer, reason=reason)
        except LedgerError as exc:
            # Already finished (a cancellation raced the failure) or the disk is gone: either
            # way nothing more to say for this job.
            logger.warning("cannot record the end of %s: %s", _short(request_id), exc)
            return
        if answer:
            reply = active.reply_relays if active is not None else ()
            if isinstance(request, ImageJob) and active is None:
                reply = self._reply_relays(request)
            self._start_publish(request_id, answer, reply)

    async def _feedback(self, active: _Active, status: JobStatus, **kwargs: Any) -> None:
        """Publish a progress-type feedback (not stored: only answers are)."""
        try:
            event = self._sign(
                build_feedback(
                    active.job,
                    status,
                    relay_hint=_hint(active.relay),
                    expiration=_later(int(time.time()), self.options.feedback_expiration_s),
                    keys=self.keys,
                    **kwargs,
                )
            )
        except NostrImagegenError as exc:
            logger.warning("cannot build %s feedback: %s", status.value, exc)
            return
        await self._publish(event, self._targets(active.reply_relays))
        await self._call_hook(self.on_feedback, event)

    def _sign(self, template: UnsignedEvent) -> Event:
        return sign_event(template, self.keys)

    # -- restart and the outbox ---------------------------------------------------------------

    async def _resume_pending(self) -> None:
        pending = await self._db(self.ledger.pending_on_startup)
        for record in pending.publish:
            self._seen.add(record.request_id)
            self._republish(record)
        for record in pending.upload:
            self._seen.add(record.request_id)
            self._spawn(self._resume_upload(record), name="resume-upload")
        for record in pending.resume:
            self._seen.add(record.request_id)
            await self._resume(record)
        if pending.publish or pending.upload or pending.resume:
            logger.info(
                "resuming: %d answer(s) to publish, %d upload(s), %d job(s)",
                len(pending.publish),
                len(pending.upload),
                len(pending.resume),
            )

    def _republish(self, record: JobRecord) -> None:
        job: ImageJob | None = None
        if record.answer and record.answer[0].kind != 7000:
            with contextlib.suppress(NostrImagegenError):
                job = self._parse_stored(record)
        self.stats.republished += 1
        self._start_publish(record.request_id, record.answer, record.reply_relays, job=job)

    async def _resume_upload(self, record: JobRecord) -> None:
        try:
            job = self._parse_stored(record)
        except NostrImagegenError as exc:
            await self._answer_error(record.request, record.relay, str(exc), JobState.REJECTED)
            return
        active = _Active(job=job, relay=record.relay, reply_relays=record.reply_relays)
        active.amount_msats = record.amount_msats
        try:
            await self._deliver(active, record.images)
        except Exception as exc:
            logger.exception("resuming the upload of %s failed", _short(job.id))
            await self._answer_error(job, record.relay, _reason(exc), JobState.FAILED, active)

    async def _resume(self, record: JobRecord) -> None:
        age = time.time() - record.received_at
        try:
            request = record.request
        except NostrImagegenError as exc:
            logger.error("stored request %s is unreadable: %s", _short(record.request_id), exc)
            return
        if record.attempts >= self.options.max_attempts:
            await self._answer_error(
                request, record.relay,
                "the service stopped while generating this image; not trying again",
                JobState.FAILED,
            )  # fmt: skip
            return
        if age > self.options.resume_max_age_s:
            await self._answer_error(
                request, record.relay,
                "the service was restarted and this job is too old to resume",
                JobState.FAILED,
            )  # fmt: skip
            return
        await self._accept(request, record.relay, record.state)

    def _parse_stored(self, record: JobRecord) -> ImageJob:
        return parse_image_job(
            record.request,
            provider=self.keys,
            accepted_kinds=self.accepted_kinds,
            input_resolver=self.input_resolver,
            limits=self.job_limits,
        )

    async def _republish_loop(self) -> None:
        """The outbox: answers stored but not acknowledged (relays down) are sent again."""
        interval = self.options.republish_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                records = await self._db(self.ledger.unanswered)
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
                self._republish(record)

    # -- NIP-89 -------------------------------------------------------------------------------

    def handler_info(self) -> UnsignedEvent:
        """The kind 31990 template describing this DVM (from ``Engine.offered()``)."""
        assert self.announcement is not None
        offered = self.engines[0].offered()
        announcement = self.announcement
        models = _names(offered, "models")
        loras = _names(offered, "loras")
        ratios = _names(offered, "ratios")
        kwargs: dict[str, Any] = {}
        if ratios:
            kwargs["ratios"] = ratios
        return build_handler_info(
            identifier=announcement.identifier,
            kinds=self.accepted_kinds,
            name=announcement.name,
            about=announcement.about,
            picture=announcement.picture,
            models=models,
            loras=loras,
            extra=announcement.extra,
            **kwargs,
        )

    async def _announce_loop(self) -> None:
        assert self.announcement is not None
        while True:
            try:
                event = self._sign(self.handler_info())
                if await self._publish(event, None):
                    logger.info("announced the DVM (NIP-89 %s)", _short(event.id))
            except NostrImagegenError as exc:
                logger.warning("cannot announce the DVM: %s", exc)
            await asyncio.sleep(max(60.0, self.announcement.refresh_hours * 3600.0))

    # -- helpers ------------------------------------------------------------------------------

    async def _db(self, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._db_executor, functools.partial(method, *args, **kwargs)
        )

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
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

    async def _call_hook(self, hook: Callable[..., Any] | None, *args: Any) -> None:
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


def _names(offered: Any, key: str) -> list[str]:
    value = offered.get(key) if isinstance(offered, Mapping) else getattr(offered, key, None)
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [str(name) for name in value]
    # Enums (Ratio) by their wire value; offered models and LoRAs by their name.
    return [
        str(item.value if isinstance(item, Enum) else getattr(item, "name", item)) for item in value
    ]


def _hint(relay: str | None) -> str | None:
    if relay and relay.startswith(("wss://", "ws://")) and len(relay) <= 2048:
        return relay
    return None


def _later(now: int, seconds: int | None) -> int | None:
    return None if seconds is None else now + seconds


def _short(event_id: str) -> str:
    return event_id[:12]


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
