"""The engine side of the runner: from a queued job to a published answer.

One worker task per engine, each with a thread of its own for the engine's calls::

    queue ─> ledger: processing ─> `processing` feedback ("generating")
      ─> fetch the input image (img2img) ─> Engine.generate (step progress as rate-limited
         `processing` feedback; the cancel flag is read between steps) ─> encode
      ─> ledger: generated (the bytes kept) ─> deliver: upload with fallback ─> sign the
         result and a `success` feedback ─> ledger: uploaded (answer stored) ─> publish

A failure of one job (``FetchError``, ``EngineError``, ``UploadError``, a bug) ends that
job with an `error` feedback; the worker goes on with the next one. A job interrupted by
shutdown goes back to `queued` in the ledger and runs again after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from PIL import Image

from nostr_imagegen.errors import (
    EngineError,
    FetchError,
    JobCancelled,
    JobRejected,
    LedgerError,
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
from nostr_imagegen.service.seams import EngineLike, EngineTimeHook, Fetcher, GenerationLike

if TYPE_CHECKING:  # httpx lives behind these; the worker imports them when it uses them
    from nostr_imagegen.service.fetch import FetchPolicy
    from nostr_imagegen.service.upload import ImageHost

__all__ = ["EngineWorkers", "encode_images", "upload_images"]

logger = logging.getLogger(__name__)

#: After the shutdown timeout, how long an interrupted engine gets to notice the flag.
_INTERRUPT_GRACE_S = 10.0


class _Interrupted(Exception):
    """The running job was interrupted by ``stop()``; it stays in the ledger to resume."""


class EngineWorkers:
    """The workers of the engines, sharing the queue in ``jobs`` (see the module doc).

    ``amount_in_result``: put a priced job's amount in the result's ``amount`` tag (no
    payment check: the customer pays after delivery).
    """

    def __init__(
        self,
        *,
        engines: Sequence[EngineLike],
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
        self._engines = tuple(engines)
        self._jobs = jobs
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
        self._executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{i}")
            for i in range(len(self._engines))
        ]
        self._workers: list[asyncio.Task[None]] = []
        #: Worker index -> the job it runs now.
        self._running: dict[int, ActiveJob] = {}
        self._closed = False

    @property
    def busy(self) -> int:
        """How many jobs are running now."""
        return len(self._running)

    def start(self) -> None:
        for index, engine in enumerate(self._engines):
            self._workers.append(
                asyncio.create_task(self._work(index, engine), name=f"engine-worker-{index}")
            )

    def close(self) -> None:
        """Take no more jobs from the queue (what is queued stays queued in the ledger)."""
        self._closed = True

    async def finish(self, timeout_s: float) -> None:
        """Let the running jobs finish within ``timeout_s``, else interrupt them; then stop."""
        self._closed = True
        # Idle workers wait on the queue: cancel them. Busy ones exit after their job.
        busy = {self._workers[index] for index in self._running}
        for worker in self._workers:
            if worker not in busy:
                worker.cancel()
        if busy:
            logger.info("waiting up to %.0f s for %d running job(s)", timeout_s, len(busy))
            _, late = await asyncio.wait(busy, timeout=timeout_s)
            if late:
                for active in self._running.values():
                    active.cancel_reason = "shutdown"
                    active.cancel.set()  # the engine stops at its next step
                _, late = await asyncio.wait(late, timeout=_INTERRUPT_GRACE_S)
            for worker in late:
                # The engine ignored the flag; the job stays `processing` and resumes later.
                worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)

    # -- one job --------------------------------------------------------------------------

    async def _work(self, index: int, engine: EngineLike) -> None:
        queue = self._jobs.queue
        while not self._closed:
            active = await queue.get()
            if self._closed:
                self._jobs.forget(active.job.id)  # still queued in the ledger
                return
            if active.cancel.is_set():
                # Cancelled between leaving the queue and reaching here.
                await self._jobs.record_cancelled(active)
                continue
            self._running[index] = active
            try:
                with job_context(active.job.id):
                    await self._process(index, engine, active)
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
            finally:
                self._running.pop(index, None)

    async def _process(self, index: int, engine: EngineLike, active: ActiveJob) -> None:
        job = active.job
        loop = asyncio.get_running_loop()
        await self._ledger_io(self._ledger.transition, job.id, JobState.PROCESSING)
        self._tasks.spawn(
            self._outbox.progress(active, JobStatus.PROCESSING, message="generating"), "feedback"
        )
        try:
            init_image = await self._fetch(job.image_url) if job.image_url else None
        except FetchError as exc:
            await self._jobs.fail(active, f"input image: {exc}")
            return

        progress = self._progress_callback(active, loop)
        try:
            started = time.monotonic()
            generated = await loop.run_in_executor(
                self._executors[index],
                functools.partial(
                    # The engine's thread logs with this job's id too (``job_context``).
                    contextvars.copy_context().run,
                    engine.generate,
                    job,
                    init_image=init_image,
                    progress=progress,
                    cancel=active.cancel,
                ),
            )
            if self._on_engine_time is not None:
                self._on_engine_time(job, time.monotonic() - started)
            if active.cancel.is_set():
                raise JobCancelled("cancelled after the last step")
            encoded = await loop.run_in_executor(
                self._executors[index],
                functools.partial(
                    encode_images,
                    job,
                    generated,
                    default_output=self._options.default_output,
                    embed_metadata=self._options.embed_metadata,
                    quality=self._options.quality,
                ),
            )
        except JobCancelled:
            await self._after_cancel(active)
            return
        except JobRejected as exc:  # e.g. an output type the encoder does not write
            await self._jobs.answer_error(job, active.relay, str(exc), JobState.REJECTED, active)
            return
        except EngineError as exc:
            await self._jobs.fail(active, str(exc))
            return
        await self._ledger_io(self._ledger.record_generated, job.id, encoded)
        if active.cancel.is_set():
            await self._after_cancel(active)
            return
        await self.deliver(active, encoded)

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


def encode_images(
    job: ImageJob,
    generated: GenerationLike,
    *,
    default_output: str,
    embed_metadata: bool,
    quality: int,
) -> list[StoredImage]:
    """The engine's encode step (``engine.encode.encode_result``) with the runner's
    ``[output]`` settings: the request's ``output`` type (else ``default_output``), and the
    generation's metadata when asked (never for an encrypted job)."""
    from nostr_imagegen.engine.encode import encode_result, normalize_output_type
    from nostr_imagegen.engine_config import OutputConfig

    output = OutputConfig(
        default_format=normalize_output_type(default_output).removeprefix("image/"),
        embed_metadata=embed_metadata,
        quality=quality,
    )
    return [
        StoredImage(
            mime=encoded.mime,
            sha256=encoded.sha256,
            width=encoded.width,
            height=encoded.height,
            size_bytes=len(encoded.data),
            data=encoded.data,
        )
        for encoded in encode_result(job, generated, output)
    ]


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
