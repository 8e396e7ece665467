"""Priced jobs: what a job costs, and the wait for the operator's payment check.

With a ``PaymentCheck`` a priced job waits, announced by a feedback carrying the price
(millisats) and the invoice::

    ["status", "payment-required"]
    ["amount", "21000", "lnbc210n1..."]

until ``wait_paid`` says paid (the job goes to the queue), refused or too late (`error`).
Without a check the amount goes in the result's ``amount`` tag: pay after delivery.
"""

from __future__ import annotations

import asyncio
import logging

from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.imagejob.results import JobStatus
from nostr_imagegen.service.activejobs import ActiveJobs, failure_reason
from nostr_imagegen.service.background import LedgerThread
from nostr_imagegen.service.jobqueue import ActiveJob
from nostr_imagegen.service.ledger import JobState, Ledger
from nostr_imagegen.service.options import RunnerOptions
from nostr_imagegen.service.outbox import Outbox
from nostr_imagegen.service.seams import PaymentCheck, PricingPolicy

__all__ = ["PaymentWait", "price"]

logger = logging.getLogger(__name__)


def price(job: ImageJob, pricing: PricingPolicy | None) -> int | str | None:
    """The amount to charge (None: free), or a rejection reason (the bid is too low)."""
    if pricing is None:
        return None
    amount = pricing(job)
    if not amount:
        return None
    if job.bid is not None and job.bid.max_msats < amount:
        return f"this job costs {amount} msats; the request bids at most {job.bid.max_msats}"
    return int(amount)


class PaymentWait:
    """Asks ``check`` for an invoice, says `payment-required`, waits until paid."""

    def __init__(
        self,
        *,
        check: PaymentCheck,
        jobs: ActiveJobs,
        outbox: Outbox,
        ledger: Ledger,
        ledger_io: LedgerThread,
        options: RunnerOptions,
    ) -> None:
        self._check = check
        self._jobs = jobs
        self._outbox = outbox
        self._ledger = ledger
        self._ledger_io = ledger_io
        self._options = options

    async def paid(self, active: ActiveJob, state: JobState) -> bool:
        """True once paid: the caller queues the job. Otherwise the job has ended here
        (`error`, or cancelled by the customer); ``CancelledError`` on shutdown leaves it
        `payment-required` in the ledger."""
        job, check = active.job, self._check
        assert active.amount_msats is not None
        try:
            if state is not JobState.PAYMENT_REQUIRED:
                await self._ledger_io(
                    self._ledger.transition, job.id, JobState.PAYMENT_REQUIRED,
                    amount_msats=active.amount_msats,
                )  # fmt: skip
            bolt11 = await asyncio.wait_for(
                check.invoice(job, active.amount_msats), self._options.publish_timeout_s
            )
            active.bolt11 = bolt11
            await self._outbox.progress(
                active,
                JobStatus.PAYMENT_REQUIRED,
                amount_msats=active.amount_msats,
                bolt11=bolt11,
            )
            paid = await asyncio.wait_for(
                check.wait_paid(job, active.amount_msats, bolt11), self._options.payment_timeout_s
            )
        except asyncio.CancelledError:
            if active.cancel_reason == "customer":
                await self._jobs.record_cancelled(active)
            else:
                self._jobs.forget(job.id)  # shutdown: stays payment-required
            raise
        except TimeoutError:
            await self._jobs.answer_error(
                job, active.relay, "payment was not received in time", JobState.FAILED, active
            )
            return False
        except Exception as exc:
            logger.exception("payment check failed for %.12s", job.id)
            await self._jobs.answer_error(
                job, active.relay, f"payment could not be checked: {failure_reason(exc)}",
                JobState.FAILED, active,
            )  # fmt: skip
            return False
        finally:
            active.waiter = None
        if not paid:
            await self._jobs.answer_error(
                job, active.relay, "payment was not received", JobState.FAILED, active
            )
            return False
        return True
