"""The jobs the runner holds, and how each one ends.

A job is *active* from its acceptance until its end is recorded: waiting for payment,
queued, or running. Every end takes it out of here (and out of the queue) and writes the
ledger first; an `error` end then publishes the stored feedback through the outbox::

    ["status", "error", "the service is busy (8 jobs waiting); try again later"]

A cancellation by the customer ends the job without an answer: they asked for it.
"""

from __future__ import annotations

import logging

from nostr_imagegen.errors import LedgerError, NostrImagegenError
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.imagejob.results import JobStatus
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.service.background import LedgerThread
from nostr_imagegen.service.jobqueue import ActiveJob
from nostr_imagegen.service.ledger import JobState, Ledger
from nostr_imagegen.service.options import RunnerStats
from nostr_imagegen.service.outbox import Outbox
from nostr_imagegen.service.scheduler import Scheduler

__all__ = ["ActiveJobs", "failure_reason"]

logger = logging.getLogger(__name__)

#: An `error` feedback quotes at most this much of an unexpected exception.
_MAX_REASON_CHARS = 200


class ActiveJobs:
    """Active jobs by request id, the queue they wait in, and their ends (see the module doc)."""

    def __init__(
        self,
        *,
        queue: Scheduler,
        ledger: Ledger,
        ledger_io: LedgerThread,
        outbox: Outbox,
        stats: RunnerStats,
    ) -> None:
        self.queue = queue
        self._by_id: dict[str, ActiveJob] = {}
        self._ledger = ledger
        self._ledger_io = ledger_io
        self._outbox = outbox
        self._stats = stats

    def add(self, active: ActiveJob) -> None:
        self._by_id[active.job.id] = active

    def get(self, request_id: str) -> ActiveJob | None:
        return self._by_id.get(request_id)

    def all(self) -> list[ActiveJob]:
        return list(self._by_id.values())

    def waiting_for_payment(self) -> int:
        return sum(1 for active in self._by_id.values() if active.waiter is not None)

    def forget(self, request_id: str) -> None:
        """Drop a job from memory without an end: it stays in the ledger and resumes there."""
        self._by_id.pop(request_id, None)

    # -- the ends -------------------------------------------------------------------------

    async def reject(
        self,
        request: Event | ImageJob,
        relay: str | None,
        reason: str,
        active: ActiveJob | None = None,
    ) -> None:
        """A request we will not serve (unreadable, not offered, bid too low)."""
        self._stats.rejected += 1
        await self.answer_error(request, relay, reason, JobState.REJECTED, active)

    async def fail(self, active: ActiveJob, reason: str) -> None:
        self._stats.failed += 1
        await self.answer_error(active.job, active.relay, reason, JobState.FAILED, active)

    async def answer_busy(self, active: ActiveJob) -> None:
        self._stats.busy += 1
        await self.answer_error(
            active.job,
            active.relay,
            f"the service is busy ({self.queue.capacity} jobs waiting); try again later",
            JobState.FAILED,
            active,
        )

    async def answer_error(
        self,
        request: Event | ImageJob,
        relay: str | None,
        reason: str,
        state: JobState,
        active: ActiveJob | None = None,
    ) -> None:
        """Store, then publish, an `error` feedback; the job ends in ``state``."""
        request_id = request.id
        self._by_id.pop(request_id, None)
        if active is not None:
            self.queue.remove(active)
        answer: list[Event] = []
        try:
            answer.append(self._outbox.feedback(request, JobStatus.ERROR, relay, message=reason))
        except NostrImagegenError as exc:
            logger.warning("cannot build error feedback for %.12s: %s", request_id, exc)
        logger.info("job %.12s %s: %s", request_id, state.value, reason)
        try:
            await self._ledger_io(
                self._ledger.record_answer, request_id, state, answer, reason=reason
            )
        except LedgerError as exc:
            # Already finished (a cancellation raced the failure) or the disk is gone: either
            # way nothing more to say for this job.
            logger.warning("cannot record the end of %.12s: %s", request_id, exc)
            return
        if answer:
            reply = active.reply_relays if active is not None else ()
            if isinstance(request, ImageJob) and active is None:
                reply = self._outbox.reply_relays(request)
            self._outbox.send_answer(request_id, answer, reply)

    async def cancel(self, active: ActiveJob) -> None:
        """The customer asked: a job waiting for payment stops waiting, a queued one leaves
        the queue (both recorded cancelled); a running one sees the flag between two steps
        (or before publishing)."""
        active.cancel_reason = "customer"
        active.cancel.set()
        logger.info("job %.12s cancelled by the customer", active.job.id)
        if active.waiter is not None:
            active.waiter.cancel()
        elif self.queue.remove(active):
            await self.record_cancelled(active)

    async def record_cancelled(self, active: ActiveJob) -> None:
        """The customer cancelled: record it; no answer is published."""
        self._by_id.pop(active.job.id, None)
        self._stats.cancelled += 1
        try:
            await self.end_quietly(active.job.id, JobState.CANCELLED, "cancelled by the customer")
        except LedgerError as exc:
            logger.warning("could not record the cancellation of %s: %s", active.job.id, exc)

    async def end_quietly(self, request_id: str, state: JobState, reason: str) -> None:
        """Record an end that gets no answer (ignored, cancelled): the ledger only."""
        await self._ledger_io(self._ledger.record_answer, request_id, state, [], reason=reason)


def failure_reason(exc: BaseException) -> str:
    """What an `error` feedback says about an unexpected exception: its message, cut short."""
    text = str(exc) or type(exc).__name__
    return text[:_MAX_REASON_CHARS]
