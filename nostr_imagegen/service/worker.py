"""The engine side of the runner: from a queued job to a published answer.

One worker task per engine slot (``service.slots``: a local engine in a thread of its own,
or a Ray actor), each asking the scheduler for its next batch::

    scheduler.take(slot) ─> per job: ledger: processing ─> `processing` feedback
      ("generating") ─> fetch the input image (img2img: never batched)
      ─> slot.run(tasks): generate (step progress as rate-limited `processing` feedback; the
         cancel flag is read between steps) and encode, one outcome per job
      ─> per job: ledger: generated (the bytes kept) ─> deliver: upload with fallback ─> sign
         the result and a `success` feedback ─> ledger: uploaded (answer stored) ─> publish

A failure of one job (``FetchError``, ``EngineError``, ``UploadError``, a bug) ends that
job with an `error` feedback; the others of its batch go on. A job whose engine went away
(``EngineUnavailable``: a Ray worker died) goes back to the queue, `queued` in the ledger with
the attempt counted, to run on another slot, up to ``RunnerOptions.max_attempts`` starts; then
it is answered `error`. A job interrupted by shutdown goes back to `queued` in the ledger
and runs again after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from PIL import Image

from nostr_imagegen.errors import (
    EngineError,
    EngineUnavailable,
    FetchError,
    JobCancelled,
    JobRejected,
    LedgerError,
    NostrImagegenError,
    UploadError,
)
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.imagejob.results import ImageLink, JobStatus
from nostr_imagegen.service.activejobs import ActiveJobs, failure_reason
from nostr_imagegen.service.background import BackgroundTasks, LedgerThread
from nostr_imagegen.service.jobqueue import ActiveJob
from nostr_imagegen.service.ledger import JobRecord, JobState, Ledger, StoredImage
from nostr_imagegen.service.logging_json import job_context
from nostr_imagegen.service.options import RunnerOptions, RunnerStats
from nostr_imagegen.service.outbox import Outbox
from nostr_imagegen.service.scheduler import Scheduler
from nostr_imagegen.service.seams import EngineTimeHook, Fetcher
from nostr_imagegen.service.slots import EngineSlot, EngineTask, TaskOutcome

if TYPE_CHECKING:  # httpx lives behind these; the worker imports them when it uses them
    from nostr_imagegen.service.fetch import FetchPolicy
    from nostr_imagegen.service.upload import ImageHost

__all__ = ["EngineWorkers", "upload_images"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: After the shutdown timeout, how long an interrupted engine gets to notice the flag.
_INTERRUPT_GRACE_S = 10.0


class _Interrupted(Exception):
    """The running job was interrupted by ``stop()``; it stays in the ledger to resume."""


class EngineWorkers:
    """The workers of the slots, taking from the scheduler in ``jobs.queue`` (module doc).

    ``amount_in_result``: put a priced job's amount in the result's ``amount`` tag (no
    payment check: the customer pays after delivery). ``on_engine_time(job, seconds)``: the
    time its slot spent on the job (a batch's time shared among its jobs).
    """

    def __init__(
        self,
        *,
        slots: Sequence[EngineSlot],
        jobs: ActiveJobs,
        outbox: Outbox,
        hosts: Sequence[ImageHost],
        ledger: Ledger,
        ledger_io: LedgerThread,
        tasks: BackgroundTasks,
        options: RunnerOptions,
        stats: RunnerStats,
        fetcher: Fetcher | None = None,
        fetch_policy: FetchPolicy | None = None,
        amount_in_result: bool = True,
        on_engine_time: EngineTimeHook | None = None,
    ) -> None:
        self._slots = tuple(slots)
        self._jobs = jobs
        self._scheduler: Scheduler = jobs.queue
        self._outbox = outbox
        self._hosts = tuple(hosts)
        self._ledger = ledger
        self._ledger_io = ledger_io
        self._tasks = tasks
        self._options = options
        self._stats = stats
        self._fetcher = fetcher
        self._fetch_policy = fetch_policy
        self._amount_in_result = amount_in_result
        self._on_engine_time = on_engine_time
        self._workers: list[asyncio.Task[None]] = []
        #: Slot index -> the jobs it runs now.
        self._running: dict[int, list[ActiveJob]] = {}
        self._closed = False

    @property
    def busy(self) -> int:
        """How many jobs are running now."""
        return sum(len(batch) for batch in self._running.values())

    def start(self) -> None:
        for index, slot in enumerate(self._slots):
            self._workers.append(
                asyncio.create_task(self._work(index, slot), name=f"engine-worker-{index}")
            )

    def close(self) -> None:
        """Take no more jobs from the queue (what is queued stays queued in the ledger)."""
        self._closed = True

    async def finish(self, timeout_s: float) -> None:
        """Let the running jobs finish within ``timeout_s``, else interrupt them; then stop."""
        self._closed = True
        # Idle workers wait on the scheduler: cancel them. Busy ones exit after their batch.
        busy = {self._workers[index] for index in self._running}
        for worker in self._workers:
            if worker not in busy:
                worker.cancel()
        if busy:
            logger.info("waiting up to %.0f s for %d running job(s)", timeout_s, self.busy)
            _, late = await asyncio.wait(busy, timeout=timeout_s)
            if late:
                for batch in self._running.values():
                    for active in batch:
                        active.cancel_reason = "shutdown"
                        active.cancel.set()  # the engine stops at its next step
                _, late = await asyncio.wait(late, timeout=_INTERRUPT_GRACE_S)
            for worker in late:
                # The engine ignored the flag; the jobs stay `processing` and resume later.
                worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    # -- one batch ------------------------------------------------------------------------

    async def _work(self, index: int, slot: EngineSlot) -> None:
        while not self._closed:
            batch = await self._scheduler.take(index)
            if self._closed:
                for active in batch:
                    self._jobs.forget(active.job.id)  # still queued in the ledger
                return
            self._running[index] = batch
            try:
                await self._run_batch(index, slot, batch)
            finally:
                self._running.pop(index, None)
                self._scheduler.done(index)

    async def _run_batch(self, index: int, slot: EngineSlot, batch: list[ActiveJob]) -> None:
        tasks: list[EngineTask] = []
        for active in batch:
            with job_context(active.job.id):
                task = await self._guarded(active, self._prepare(active))
            if task is not None:
                tasks.append(task)
        if not tasks:
            return
        outcomes = await self._run_tasks(slot, tasks)
        for task, outcome in zip(tasks, outcomes, strict=True):
            active = task.active
            with job_context(active.job.id):
                await self._guarded(active, self._conclude(index, active, outcome))

    async def _guarded(self, active: ActiveJob, step: Coroutine[Any, Any, _T]) -> _T | None:
        """Run one job's step; a bug ends that job with an `error`, never its batch."""
        try:
            return await step
        except _Interrupted:
            logger.info("job %s interrupted by shutdown; it resumes on restart", active.job.id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: still answer this job and keep serving
            logger.exception("job %.12s failed unexpectedly", active.job.id)
            await self._jobs.answer_error(
                active.job,
                active.relay,
                f"internal error: {failure_reason(exc)}",
                JobState.FAILED,
                active,
            )
        return None

    async def _prepare(self, active: ActiveJob) -> EngineTask | None:
        """Processing in the ledger, the "generating" feedback, the input image; None when
        the job ended here (cancelled while it waited, its input unreachable)."""
        job = active.job
        if active.cancel.is_set():  # cancelled between leaving the queue and reaching here
            await self._jobs.record_cancelled(active)
            return None
        await self._ledger_io(self._ledger.transition, job.id, JobState.PROCESSING)
        self._tasks.spawn(
            self._outbox.progress(active, JobStatus.PROCESSING, message="generating"), "feedback"
        )
        try:
            init_image = await self._fetch(job.image_url) if job.image_url else None
        except FetchError as exc:
            await self._jobs.fail(active, f"input image: {exc}")
            return None
        progress = self._progress_callback(active, asyncio.get_running_loop())
        return EngineTask(active, init_image=init_image, progress=progress)

    async def _run_tasks(self, slot: EngineSlot, tasks: list[EngineTask]) -> list[TaskOutcome]:
        """``slot.run``, with each job's share of its time for ``on_engine_time``."""
        started = time.monotonic()
        try:
            outcomes = await slot.run(tasks)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the slot: every job of the batch ends with it
            logger.exception("%s failed unexpectedly", slot.name)
            return [EngineError(f"internal error: {failure_reason(exc)}")] * len(tasks)
        if len(outcomes) != len(tasks):
            error = EngineError(f"{slot.name} answered {len(outcomes)} of {len(tasks)} jobs")
            return [error] * len(tasks)
        share = (time.monotonic() - started) / len(tasks)
        if self._on_engine_time is not None:
            for task, outcome in zip(tasks, outcomes, strict=True):
                if not isinstance(outcome, NostrImagegenError):
                    self._on_engine_time(task.active.job, share)
        return outcomes

    async def _conclude(self, index: int, active: ActiveJob, outcome: TaskOutcome) -> None:
        """One job's outcome: its answer, its end, or its way back to the queue."""
        job = active.job
        if isinstance(outcome, JobCancelled):
            await self._after_cancel(active)
        elif isinstance(outcome, EngineUnavailable):
            await self._run_elsewhere(index, active, outcome)
        elif isinstance(outcome, JobRejected):  # e.g. an output type the encoder does not write
            reason = str(outcome)
            await self._jobs.answer_error(job, active.relay, reason, JobState.REJECTED, active)
        elif isinstance(outcome, NostrImagegenError):
            await self._jobs.fail(active, str(outcome))
        elif active.cancel.is_set():
            await self._after_cancel(active)
        else:
            await self._ledger_io(self._ledger.record_generated, job.id, outcome)
            if active.cancel.is_set():
                await self._after_cancel(active)
                return
            await self.deliver(active, outcome)

    async def _run_elsewhere(self, index: int, active: ActiveJob, exc: EngineUnavailable) -> None:
        """The slot's engine went away under the job: queue it again for another slot (the
        attempt stays counted), or answer `error` once it has had its ``max_attempts``."""
        job = active.job
        if active.cancel_reason == "customer":
            await self._jobs.record_cancelled(active)
            return
        record = await self._ledger_io(self._ledger.get, job.id)
        attempts = record.attempts if record is not None else self._options.max_attempts
        if attempts >= self._options.max_attempts:
            await self._jobs.fail(
                active,
                f"the engine died while generating this image ({attempts} times); not trying again",
            )
            return
        name = self._slots[index].name
        logger.warning("%s went away running job %.12s (%s); queued again", name, job.id, exc)
        await self._ledger_io(
            self._ledger.transition, job.id, JobState.QUEUED, detail=f"{name} went away"
        )
        if self._closed:
            self._jobs.forget(job.id)  # queued in the ledger: runs after the restart
            return
        self._scheduler.requeue(active, failed_on=index)

    def _progress_callback(
        self, active: ActiveJob, loop: asyncio.AbstractEventLoop
    ) -> Callable[[int, int], None]:
        interval = self._options.progress_interval_s
        last = [time.monotonic()]  # the "generating" feedback just went out

        def progress(step: int, total: int) -> None:  # called in the engine's thread
            now = time.monotonic()
            if total <= 0 or now - last[0] < interval or step >= total:
                return
            last[0] = now
            fraction = min(max(step / total, 0.0), 1.0)
            loop.call_soon_threadsafe(
                self._tasks.spawn,
                self._outbox.progress(
                    active, JobStatus.PROCESSING, message=f"step {step}/{total}", progress=fraction
                ),
                "progress",
            )

        return progress

    async def _after_cancel(self, active: ActiveJob) -> None:
        if active.cancel_reason == "shutdown":
            with contextlib.suppress(LedgerError):
                await self._ledger_io(
                    self._ledger.transition, active.job.id, JobState.QUEUED,
                    detail="interrupted by shutdown", refund_attempt=True,
                )  # fmt: skip
            self._jobs.forget(active.job.id)
            raise _Interrupted
        await self._jobs.record_cancelled(active)

    async def _fetch(self, url: str) -> Image.Image:
        if self._fetcher is not None:
            return await self._fetcher(url)
        from nostr_imagegen.service.fetch import FetchPolicy, fetch_image

        policy = self._fetch_policy if self._fetch_policy is not None else FetchPolicy()
        fetched = await fetch_image(url, policy=policy)
        return fetched.image

    # -- delivery -------------------------------------------------------------------------

    async def redeliver(self, record: JobRecord, job: ImageJob) -> None:
        """Images generated before a restart: upload them, without generating again."""
        active = ActiveJob(job=job, relay=record.relay, reply_relays=record.reply_relays)
        active.amount_msats = record.amount_msats
        try:
            payment = await self._ledger_io(self._ledger.payment, record.request_id)
            if payment is not None and payment.bolt11 is not None:  # pay after: same invoice
                active.amount_msats, active.bolt11 = payment.amount_msats, payment.bolt11
            await self.deliver(active, record.images)
        except Exception as exc:
            logger.exception("resuming the upload of %.12s failed", job.id)
            await self._jobs.answer_error(
                job, record.relay, failure_reason(exc), JobState.FAILED, active
            )

    async def deliver(self, active: ActiveJob, images: Sequence[StoredImage]) -> None:
        """Upload stored images, sign the answer, store it, publish it."""
        job = active.job
        try:
            links = await upload_images(self._hosts, images)
        except UploadError as exc:
            await self._jobs.fail(active, f"the image could not be stored: {exc}")
            return
        if active.cancel.is_set() and active.cancel_reason == "customer":
            await self._jobs.record_cancelled(active)
            return
        now = int(time.time())
        amount = active.amount_msats if self._amount_in_result else None
        bolt11 = active.bolt11 if amount is not None else None
        result = self._outbox.result(
            job, links, active.relay, amount_msats=amount, bolt11=bolt11, now=now
        )
        success = self._outbox.feedback(job, JobStatus.SUCCESS, active.relay, now=now)
        await self._ledger_io(
            self._ledger.record_uploaded, job.id, [link.url for link in links], [result, success]
        )
        self._jobs.forget(job.id)
        self._stats.succeeded += 1
        self._outbox.send_answer(job.id, (result, success), active.reply_relays, job=job)


async def upload_images(
    hosts: Sequence[ImageHost], images: Sequence[StoredImage]
) -> list[ImageLink]:
    """Upload each image to the first host that takes it; the links a result describes.
    Raises ``UploadError`` when no host took one."""
    from nostr_imagegen.service.upload import upload_with_fallback

    links: list[ImageLink] = []
    for image in images:
        assert image.data is not None
        uploaded = await upload_with_fallback(
            hosts, image.data, mime=image.mime, sha256=image.sha256
        )
        # A NIP-96 host may re-encode the file: describe what it serves, and leave the
        # dimensions out when the bytes are no longer ours.
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
    return links
