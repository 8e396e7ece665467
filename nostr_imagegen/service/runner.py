"""The job runner: request in, feedback and result out, every step written ahead in the ledger.

The path of one kind 5100 request::

    relay EVENT ─> seen this session? ─> signature ─> `p` names another provider? (ignore)
      ─> ledger.claim (duplicate from another relay / after a restart? drop)
      ─> parse_image_job  (JobRejected -> `error` feedback)
      ─> pricing policy   (amount? `payment-required` + wait: service.payment.flow, or the
                           older PaymentCheck hook; bid too low? `error` naming the price)
      ─> bounded queue    (full? `error`: busy)   ─> `processing` feedback (queue position)
      ─> scheduler (service.scheduler: a free engine slot takes the jobs of a model it has
         loaded, batched when their plans allow) ─> engine worker: fetch input image
         ─> slot.run: Engine.generate in the slot's thread or a Ray actor (step progress as
         rate-limited `processing` feedback; a kind 5 deletion by the customer sets the
         cancel flag) ─> encode
      ─> ledger: generated (bytes kept) ─> upload with fallback ─> build + sign result and
         `success` feedback ─> ledger: uploaded (signed answer stored) ─> publish to the
         request's relays plus ours ─> ledger: published

Any failure of one job (``FetchError``, ``EngineError``, ``UploadError``, a bug) becomes an
`error` feedback for that job; the runner itself keeps going. A restart reads
``Ledger.pending_on_startup()``: stored answers are republished as they are (same event ids),
generated images are uploaded without generating again, unfinished jobs run again (or get an
`error` when they are too old or crashed the service ``max_attempts`` times).

This module holds the path up to the queue, cancellations and the restart; the rest lives
in a module each: ``service.payment`` (price, payment flow, backends), ``service.scheduler``
(which jobs a free engine runs next), ``service.worker`` (queue to answer),
``service.localslot`` (an engine of this process as a slot), ``service.activejobs`` (the jobs
in hand and how they end), ``service.outbox`` (signing, publishing, retries),
``service.announce`` (NIP-89), ``service.seams`` (what may be injected), ``service.options``
(settings and counters).

Everything is injected (keys, relay pool, engine, image hosts, ledger, pricing, payment
check, fetcher), so programs can embed the runner piece by piece and tests can drive it with
fakes: see ``examples/embed_runner.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from nostr_imagegen.errors import (
    ConfigError,
    EventError,
    JobRejected,
    JobSkipped,
    NostrImagegenError,
)
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.imagejob.request import (
    DEFAULT_JOB_LIMITS,
    InputResolver,
    JobLimits,
    is_request_kind,
    parse_image_job,
)
from nostr_imagegen.imagejob.results import JobStatus, parse_cancellation
from nostr_imagegen.nostr.event import Event, UnsignedEvent, verify_event
from nostr_imagegen.nostr.kinds import DELETION_KIND, IMAGE_GENERATION_KIND
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.nostr.nip19 import npub_encode
from nostr_imagegen.nostr.signer import Signer
from nostr_imagegen.service.activejobs import ActiveJobs
from nostr_imagegen.service.announce import announce_forever, handler_info_template
from nostr_imagegen.service.background import BackgroundTasks, LedgerThread
from nostr_imagegen.service.chaining import ChainResolver, InputPending
from nostr_imagegen.service.jobqueue import ActiveJob, BoundedMap
from nostr_imagegen.service.ledger import JobRecord, JobState, Ledger
from nostr_imagegen.service.localslot import LocalSlot
from nostr_imagegen.service.logging_json import job_context
from nostr_imagegen.service.options import Announcement, RunnerOptions, RunnerStats
from nostr_imagegen.service.outbox import Outbox
from nostr_imagegen.service.payment.backend import InvoiceBackend
from nostr_imagegen.service.payment.flow import (
    CashuRedeemerLike,
    PaymentFlow,
    PaymentSettings,
    ZapWatcherLike,
)
from nostr_imagegen.service.payment.wait import PaymentWait, price
from nostr_imagegen.service.policy import RequestPolicy
from nostr_imagegen.service.scaling import SchedulerSettings
from nostr_imagegen.service.scheduler import Scheduler
from nostr_imagegen.service.seams import (
    EngineLike,
    EngineTimeHook,
    FeedbackHook,
    Fetcher,
    GenerationLike,
    PaymentCheck,
    PlannerLike,
    PricingPolicy,
    PublishOutcome,
    RelayPoolLike,
    ResultHook,
)
from nostr_imagegen.service.slots import EncodeSettings, EngineSlot
from nostr_imagegen.service.worker import EngineWorkers

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
    "PlannerLike",
    "PricingPolicy",
    "PublishOutcome",
    "RelayPoolLike",
    "RunnerOptions",
    "RunnerStats",
]

logger = logging.getLogger(__name__)

#: How many request ids are remembered in memory to drop duplicates without the ledger.
_SEEN_CAPACITY = 20_000
#: Cancellations that arrived before their request (relays do not keep order across relays).
_EARLY_CANCEL_CAPACITY = 2_000


class JobRunner:
    """Serve kind 5100 (and other configured) job requests from a relay pool.

    ``await runner.run()`` serves until ``stop()`` (or cancellation); or ``async with runner:``
    to start it in the background. ``handle_event(relay_url, event)`` feeds one event by hand
    (an embedding program with its own relay code).

    Engines: ``engine=`` one engine or several (one per GPU), each run in a ``LocalSlot`` of
    its own; or ``slots=`` the engine slots to run jobs on (Ray workers, ``LocalSlot``s built
    by hand; the caller closes them), with ``engine=`` only planning jobs and describing the
    offer (a ``Planner``). ``scheduling``: how queued jobs go to free slots
    (``service.scheduler``; default ``SchedulerSettings()``).
    """

    def __init__(
        self,
        *,
        keys: Signer,
        pool: RelayPoolLike,
        engine: PlannerLike | Sequence[PlannerLike],
        hosts: Sequence[ImageHost],
        ledger: Ledger,
        pricing: PricingPolicy | None = None,
        payment_check: PaymentCheck | None = None,
        invoices: InvoiceBackend | None = None,
        zaps: ZapWatcherLike | None = None,
        cashu: CashuRedeemerLike | None = None,
        payment_settings: PaymentSettings | None = None,
        fetch_policy: FetchPolicy | None = None,
        fetcher: Fetcher | None = None,
        accepted_kinds: Sequence[int] = (IMAGE_GENERATION_KIND,),
        queue_size: int = 8,
        options: RunnerOptions | None = None,
        announcement: Announcement | None = None,
        job_limits: JobLimits = DEFAULT_JOB_LIMITS,
        input_resolver: InputResolver | None = None,
        on_result: ResultHook | None = None,
        on_feedback: FeedbackHook | None = None,
        policy: RequestPolicy | None = None,
        on_engine_time: EngineTimeHook | None = None,
        slots: Sequence[EngineSlot] | None = None,
        scheduling: SchedulerSettings | None = None,
    ) -> None:
        if queue_size < 1:
            raise ConfigError("queue_size must be at least 1")
        if not accepted_kinds or not all(map(is_request_kind, accepted_kinds)):
            raise ConfigError("accepted_kinds must be job request kinds (5000..5999)")
        self.keys = keys
        self.pool = pool
        self.engines: tuple[PlannerLike, ...] = (
            tuple(engine) if isinstance(engine, Sequence) else (engine,)
        )
        if not self.engines:
            raise ConfigError("the runner needs at least one engine")
        self.options = options or RunnerOptions()
        #: The slots the runner built (one per engine) and closes at ``stop()``.
        self._own_slots = slots is None
        self.slots: tuple[EngineSlot, ...] = (
            tuple(slots) if slots is not None else self._local_slots(self.engines)
        )
        if not self.slots:
            raise ConfigError("the runner needs at least one engine slot")
        self.hosts = tuple(hosts)
        self.ledger = ledger
        self.pricing = pricing
        self.payment_check = payment_check
        self.fetch_policy = fetch_policy
        self.accepted_kinds = tuple(dict.fromkeys(accepted_kinds))
        self.announcement = announcement
        self.job_limits = job_limits
        self.input_resolver = input_resolver
        self.on_result = on_result
        self.on_feedback = on_feedback
        #: Abuse control (``[policy]``); None serves everyone.
        self.policy = policy
        self.stats = RunnerStats()
        self.queue_size = queue_size

        self._seen = BoundedMap(_SEEN_CAPACITY)
        self._early_cancels = BoundedMap(_EARLY_CANCEL_CAPACITY)
        self._tasks = BackgroundTasks()
        self._ledger_io = LedgerThread()
        self._outbox = Outbox(
            keys=keys,
            pool=pool,
            ledger=ledger,
            ledger_io=self._ledger_io,
            tasks=self._tasks,
            options=self.options,
            stats=self.stats,
            parse=self._parse,
            on_result=on_result,
            on_feedback=on_feedback,
        )
        self._jobs = ActiveJobs(
            queue=Scheduler(self.slots, scheduling, capacity=queue_size),
            ledger=ledger,
            ledger_io=self._ledger_io,
            outbox=self._outbox,
            stats=self.stats,
        )
        # The payment flow (invoices from a backend, zaps, Cashu) replaces the older
        # PaymentCheck hook when any of its pieces is given.
        self._payment_flow = (
            PaymentFlow(
                settings=payment_settings or PaymentSettings(),
                backend=invoices,
                zaps=zaps,
                cashu=cashu,
                jobs=self._jobs,
                outbox=self._outbox,
                ledger=ledger,
                ledger_io=self._ledger_io,
            )
            if invoices is not None or zaps is not None or cashu is not None
            else None
        )
        if self._payment_flow is not None and payment_check is not None:
            raise ConfigError("give the runner a payment_check or invoices/zaps/cashu, not both")
        self._workers = EngineWorkers(
            slots=self.slots,
            jobs=self._jobs,
            outbox=self._outbox,
            hosts=self.hosts,
            ledger=ledger,
            ledger_io=self._ledger_io,
            tasks=self._tasks,
            options=self.options,
            stats=self.stats,
            fetcher=fetcher,
            fetch_policy=fetch_policy,
            amount_in_result=(
                self._payment_flow.pays_after
                if self._payment_flow is not None
                else payment_check is None
            ),
            on_engine_time=on_engine_time,
        )
        self._payment_wait = (
            None
            if payment_check is None
            else PaymentWait(
                check=payment_check,
                jobs=self._jobs,
                outbox=self._outbox,
                ledger=ledger,
                ledger_io=self._ledger_io,
                options=self.options,
            )
        )
        self._services: list[asyncio.Task[None]] = []
        #: Chained jobs waiting for their input: ended at once by stop() (they resume).
        #: Request id -> (its waiting task, the request); a customer's deletion ends it too.
        self._chain_waits: dict[str, tuple[asyncio.Task[None], Event]] = {}
        self._started = False
        self._stopping = False
        self._stopped = asyncio.Event()
        self.started_at = 0

    def _local_slots(self, engines: Sequence[PlannerLike]) -> tuple[EngineSlot, ...]:
        """One ``LocalSlot`` per engine, encoding with the ``[output]`` options."""
        encode = encode_settings(self.options)
        slots: list[EngineSlot] = []
        for index, engine in enumerate(engines):
            if not callable(getattr(engine, "generate", None)):
                raise ConfigError(
                    f"engine {index} ({type(engine).__name__}) cannot generate: give the runner"
                    " the engine slots to run jobs on (slots=...)"
                )
            slots.append(LocalSlot(cast(EngineLike, engine), name=f"engine-{index}", encode=encode))
        return tuple(slots)

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
        self._stopped.clear()
        await self._resume_pending()
        self._workers.start()
        await self._subscribe()
        self._services.append(asyncio.create_task(self._consume(), name="runner-consume"))
        self._services.append(
            asyncio.create_task(self._outbox.retry_unacknowledged(), name="runner-outbox")
        )
        if self.announcement is not None:
            announce = announce_forever(
                self._outbox, self.handler_info, self.announcement.refresh_hours
            )
            self._services.append(asyncio.create_task(announce, name="runner-nip89"))
        logger.info(
            "serving kinds %s as %s (queue %d, %d engine slot(s))",
            ",".join(map(str, self.accepted_kinds)),
            npub_encode(self.keys.public_key),
            self.queue_size,
            len(self.slots),
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
        self._workers.close()
        self._stopped.set()
        limit = self.options.shutdown_timeout_s if timeout_s is None else timeout_s
        for task in self._services:
            task.cancel()
        await asyncio.gather(*self._services, return_exceptions=True)
        for active in self._jobs.all():
            if active.waiter is not None:
                active.waiter.cancel()  # stays payment-required in the ledger
        for waiting, _request in list(self._chain_waits.values()):
            waiting.cancel()  # stays `received` in the ledger: waits again after a restart
        await self._workers.finish(limit)
        if self._own_slots:
            for slot in self.slots:
                await slot.close()
        await self._tasks.finish(self.options.publish_timeout_s)
        self._ledger_io.shutdown()
        logger.info("runner stopped: %s", self.stats)

    # -- intake -------------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        since = max(0, self.started_at - self.options.lookback_s)
        jobs = Filter(kinds=list(self.accepted_kinds), since=since)
        # Deletions do not tag the provider: every kind 5 from now on, checked against our jobs.
        cancels = Filter(kinds=[DELETION_KIND], since=self.started_at)
        await self.pool.subscribe("dvm-jobs", [jobs, cancels], lookback_s=self.options.lookback_s)

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
        if isinstance(self.input_resolver, ChainResolver):
            # Maybe the input a chained job waits for; it is handled as usual all the same
            # (the pool delivers each id once, whichever subscription asked for it).
            self.input_resolver.offer(event)
        try:
            if event.kind == DELETION_KIND:
                await self._handle_cancellation(event)
            elif event.kind in self.accepted_kinds:
                with job_context(event.id):
                    await self._handle_request(relay_url, event)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("unexpected failure handling event %.12s", event.id)

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
            logger.debug("ignoring request %.12s: older than the look-back", event.id)
            self.stats.ignored += 1
            return
        providers = [tag[1] for tag in event.tags_named("p") if len(tag) > 1]
        if providers and self.keys.public_key not in providers:
            self.stats.ignored += 1
            return  # NIP-90: addressed to another provider; not even recorded
        stale = None if self.policy is None else self.policy.ignore(event)
        if stale is not None:  # expired, too old, from the future: nobody waits for it
            logger.info("ignoring request %.12s: %s", event.id, stale.reason)
            self.stats.ignored += 1
            return
        if not await self._ledger_io(self.ledger.claim, event, relay=relay_url):
            self.stats.duplicates += 1
            return
        early = self._early_cancels.pop(event.id)
        if early is not None and early == event.pubkey:
            await self._jobs.end_quietly(
                event.id, JobState.CANCELLED, "cancelled by the customer before it arrived"
            )
            self.stats.cancelled += 1
            return
        if self.policy is not None:
            mine = sum(1 for a in self._jobs.all() if a.job.customer == event.pubkey)
            refusal = self.policy.refuse(event, active_jobs_of_customer=mine)
            if refusal is not None:
                await self._jobs.reject(event, relay_url, refusal.reason)
                return
        await self._accept(event, relay_url, JobState.RECEIVED)

    async def _accept(self, event: Event, relay_url: str | None, state: JobState) -> None:
        """Parse and route a claimed request (fresh, or resumed from ``state`` at startup)."""
        try:
            job = self._parse(event)
        except JobSkipped as exc:
            self.stats.ignored += 1
            await self._jobs.end_quietly(event.id, JobState.REJECTED, f"ignored: {exc}")
            return
        except JobRejected as exc:
            await self._jobs.reject(event, relay_url, str(exc))
            return
        except InputPending as pending:
            waiting = self._tasks.spawn(
                self._accept_when_resolved(event, relay_url, state, pending), "chain"
            )
            self._chain_waits[event.id] = (waiting, event)
            waiting.add_done_callback(lambda _t: self._chain_waits.pop(event.id, None))
            return
        refusal = None if self.policy is None else self.policy.refuse_prompt(job)
        if refusal is not None:  # before any engine time
            await self._jobs.reject(job, relay_url, refusal.reason)
            return
        try:
            plan = self._check_plan(job)
        except JobRejected as exc:
            await self._jobs.reject(job, relay_url, str(exc))
            return
        reply_relays = self._outbox.reply_relays(job)
        active = ActiveJob(job=job, relay=relay_url, reply_relays=reply_relays, plan=plan)
        if state is JobState.RECEIVED:
            await self._ledger_io(
                self.ledger.transition, job.id, JobState.ACCEPTED, reply_relays=reply_relays
            )
            state = JobState.ACCEPTED
        amount = price(job, self.pricing)
        if isinstance(amount, str):
            await self._jobs.reject(job, relay_url, amount, active)
            return
        active.amount_msats = amount
        self._jobs.add(active)
        flow = self._payment_flow
        if amount and flow is not None:
            if await flow.covered_by_allowance(active):  # decided once, kept in the ledger
                active.amount_msats = None  # today's free allowance: no amount anywhere
            elif flow.pays_after:
                if not await flow.invoice_for_result(active):
                    return
            elif state in (JobState.ACCEPTED, JobState.PAYMENT_REQUIRED):
                if self._jobs.waiting_for_payment() >= self.options.max_payment_waits:
                    self.stats.busy += 1
                    await self._jobs.answer_error(
                        job, relay_url, "the service is busy; try again later",
                        JobState.FAILED, active,
                    )  # fmt: skip
                    return
                active.waiter = self._tasks.spawn(self._pay_then_enqueue(active, state), "payment")
                return
            await self._enqueue(active, force=state is not JobState.ACCEPTED)
            return
        if (
            amount
            and self._payment_wait is not None
            and state in (JobState.ACCEPTED, JobState.PAYMENT_REQUIRED)
        ):
            if self._jobs.waiting_for_payment() >= self.options.max_payment_waits:
                self.stats.busy += 1
                await self._jobs.answer_error(
                    job, relay_url, "the service is busy; try again later", JobState.FAILED, active
                )
                return
            active.waiter = self._tasks.spawn(self._pay_then_enqueue(active, state), "payment")
            return
        # A resumed job was accepted before the restart: it does not count against the limit.
        await self._enqueue(active, force=state is not JobState.ACCEPTED)

    async def _accept_when_resolved(
        self, event: Event, relay_url: str | None, state: JobState, pending: InputPending
    ) -> None:
        """A chained job: say it waits (`processing`), wait for its input (bounded by the
        resolver), then accept it again, or answer `error` when the input never came."""
        with job_context(event.id):
            try:
                waiting = self._outbox.feedback(
                    event, JobStatus.PROCESSING, relay_url, message=pending.waiting_message()
                )
                await self._outbox.publish(waiting)
            except NostrImagegenError as exc:
                logger.warning("cannot say that %.12s waits for its input: %s", event.id, exc)
            reason = await pending.wait()
            if self._stopping:
                return  # still `received` in the ledger: resumed on the next start
            if reason is not None:
                await self._jobs.reject(event, relay_url, reason)
                return
            await self._accept(event, relay_url, state)

    @property
    def queue_depth(self) -> int:
        """Jobs waiting in the queue for an engine."""
        return len(self._jobs.queue)

    @property
    def engines_busy(self) -> int:
        """Jobs running on the engines now."""
        return self._workers.busy

    def queued_ids(self) -> list[str]:
        """Request ids in the queue, the next one first."""
        return self._jobs.queue.ids()

    def active_jobs(self) -> list[ActiveJob]:
        """The jobs in hand (waiting for payment or input, queued, running), for status."""
        return self._jobs.all()

    def _parse(self, request: Event) -> ImageJob:
        """The typed job of a request, with this runner's kinds, limits and input resolver."""
        return parse_image_job(
            request,
            provider=self.keys,
            accepted_kinds=self.accepted_kinds,
            input_resolver=self.input_resolver,
            limits=self.job_limits,
        )

    def _check_plan(self, job: ImageJob) -> object:
        """Reject what the engine cannot serve (model, size, steps...) before queueing or
        asking for payment; the plan routes the job. ``Engine.plan`` is cheap: nothing is
        loaded."""
        return self.engines[0].plan(job)

    async def _pay_then_enqueue(self, active: ActiveJob, state: JobState) -> None:
        if self._payment_flow is not None:
            paid = await self._payment_flow.paid(active, state)
        else:
            assert self._payment_wait is not None
            paid = await self._payment_wait.paid(active, state)
        if paid:
            await self._enqueue(active)

    async def _enqueue(self, active: ActiveJob, *, force: bool = False) -> None:
        assert self._started  # the workers taking from the queue run from start()
        job, queue = active.job, self._jobs.queue
        if self._stopping:
            self._jobs.forget(job.id)  # stays in the ledger; resumed on the next start
            return
        if not force and queue.full():
            await self._jobs.answer_busy(active)
            return
        # Write-ahead: the ledger says `queued` before a worker can see the job.
        await self._ledger_io(self.ledger.transition, job.id, JobState.QUEUED)
        if self._stopping:
            self._jobs.forget(job.id)
            return
        position = queue.put(active, force=force)
        if position is None:  # filled up while the ledger was written
            await self._jobs.answer_busy(active)
            return
        if position - 1 + self._workers.busy > 0:  # it has to wait: say where it stands
            self._tasks.spawn(
                self._outbox.progress(active, JobStatus.PROCESSING, queue_position=position),
                name="feedback",
            )

    # -- cancellation ---------------------------------------------------------------------------

    async def _handle_cancellation(self, event: Event) -> None:
        try:
            verify_event(event)
            cancellation = parse_cancellation(event)
        except EventError:
            return
        for request_id in cancellation.request_ids:
            chained = self._chain_waits.get(request_id)
            if chained is not None and cancellation.cancels(chained[1]):
                chained[0].cancel()  # waiting for its input: stop waiting, no answer
                self.stats.cancelled += 1
                await self._jobs.end_quietly(
                    request_id, JobState.CANCELLED, "cancelled by the customer"
                )
                continue
            active = self._jobs.get(request_id)
            if active is None:
                if request_id not in self._seen:
                    self._early_cancels.add(request_id, cancellation.pubkey)
                continue
            if not cancellation.cancels(active.job):
                logger.info("ignoring a deletion of %.12s by someone else", request_id)
                continue
            await self._jobs.cancel(active)

    # -- restart --------------------------------------------------------------------------------

    async def _resume_pending(self) -> None:
        pending = await self._ledger_io(self.ledger.pending_on_startup)
        for record in pending.publish:
            self._seen.add(record.request_id)
            self._outbox.republish(record)
        for record in pending.upload:
            self._seen.add(record.request_id)
            self._tasks.spawn(self._resume_upload(record), name="resume-upload")
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

    async def _resume_upload(self, record: JobRecord) -> None:
        try:
            job = self._parse(record.request)
        except NostrImagegenError as exc:
            await self._jobs.answer_error(record.request, record.relay, str(exc), JobState.REJECTED)
            return
        await self._workers.redeliver(record, job)

    async def _resume(self, record: JobRecord) -> None:
        """A job unfinished at the restart: accept it again from where the ledger says."""
        age = time.time() - record.received_at
        try:
            request = record.request
        except NostrImagegenError as exc:
            logger.error("stored request %.12s is unreadable: %s", record.request_id, exc)
            return
        if record.attempts >= self.options.max_attempts:
            await self._jobs.answer_error(
                request, record.relay,
                "the service stopped while generating this image; not trying again",
                JobState.FAILED,
            )  # fmt: skip
            return
        if age > self.options.resume_max_age_s:
            await self._jobs.answer_error(
                request, record.relay,
                "the service was restarted and this job is too old to resume",
                JobState.FAILED,
            )  # fmt: skip
            return
        await self._accept(request, record.relay, record.state)

    # -- NIP-89 -------------------------------------------------------------------------------

    def handler_info(self) -> UnsignedEvent:
        """The kind 31990 template describing this DVM (from ``Engine.offered()``)."""
        assert self.announcement is not None
        return handler_info_template(
            self.announcement, self.engines[0].offered(), self.accepted_kinds
        )


def encode_settings(options: RunnerOptions) -> EncodeSettings:
    """How slots encode images for a runner with ``options`` (the ``[output]`` knobs)."""
    return EncodeSettings(
        default_output=options.default_output,
        embed_metadata=options.embed_metadata,
        quality=options.quality,
    )
