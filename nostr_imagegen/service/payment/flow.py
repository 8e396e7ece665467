"""The payment flow of a priced job: invoice (or zap, or Cashu), wait, then work.

Pay before (``[payment] mode = "before"``, the default)::

    request ─> price (bid too low? `error` naming the price)
      ─> free allowance left today? (ledger: method "free") ─> queue
      ─> ["cashu", TOKEN] tag? redeem it (refused: `error`) ─> queue
      ─> ledger: payment row with the invoice (one per job, ever) ─> feedback
         ["status", "payment-required"] ["amount", "21000", "lnbc210n1..."]
      ─> backend.wait_paid / zap receipt ─> ledger: paid (proof unique) ─> `processing`
         ─> queue;   or the invoice expires / timeout_s passes ─> `error`

Pay after (``mode = "after"``): the invoice is issued (and stored) before the work, and the
result carries ``["amount", "21000", "lnbc210n1..."]``; nothing waits.

After a crash the ledger decides: a job whose payment is recorded paid is queued without
asking again; one with an invoice asks the backend whether it was paid meanwhile, then waits
on the *same* invoice until it expires; no job is ever invoiced twice. Proofs (payment hash,
zap receipt id, Cashu token hash) are unique in the ledger, so one never pays two jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from nostr_imagegen.errors import NostrImagegenError, PaymentError, PaymentRefused
from nostr_imagegen.imagejob.results import JobStatus
from nostr_imagegen.service.activejobs import ActiveJobs, failure_reason
from nostr_imagegen.service.background import LedgerThread
from nostr_imagegen.service.jobqueue import ActiveJob
from nostr_imagegen.service.ledger import JobState, Ledger, PaymentRecord
from nostr_imagegen.service.outbox import Outbox
from nostr_imagegen.service.payment.backend import Invoice, InvoiceBackend

__all__ = ["CashuRedeemerLike", "PaymentFlow", "PaymentSettings", "ZapWatcherLike"]

logger = logging.getLogger(__name__)


class _ZapPayment(Protocol):
    @property
    def receipt_id(self) -> str: ...
    @property
    def amount_msats(self) -> int: ...


class ZapWatcherLike(Protocol):
    """``service.payment.zaps.ZapWatcher``: waits for a valid NIP-57 receipt (None: timeout)."""

    async def wait_for(
        self, *, event_id: str, payer_pubkey: str, amount_msats: int, timeout_s: float
    ) -> _ZapPayment | None: ...


class _CashuRedemption(Protocol):
    @property
    def amount_msats(self) -> int: ...
    @property
    def mint(self) -> str: ...
    @property
    def token_hash(self) -> str: ...
    @property
    def token_msats(self) -> int: ...


class CashuRedeemerLike(Protocol):
    """``service.payment.cashu.CashuRedeemer``: swaps a token in, or ``PaymentRefused``."""

    async def redeem(self, token: str, *, price_msats: int) -> _CashuRedemption: ...


@dataclass(frozen=True, slots=True)
class PaymentSettings:
    """The flow's knobs (``[payment]`` and ``[pricing] free_jobs_per_day``)."""

    mode: Literal["before", "after"] = "before"
    timeout_s: float = 600.0
    invoice_expiry_s: int = 600
    free_jobs_per_day: int = 0
    #: Shown to the payer's wallet; the job id is appended.
    memo: str = "nostr-imagegen job"


class PaymentFlow:
    """Takes a priced job to "paid" (or to its `error`) with the ledger as the record."""

    def __init__(
        self,
        *,
        settings: PaymentSettings,
        backend: InvoiceBackend | None,
        zaps: ZapWatcherLike | None,
        cashu: CashuRedeemerLike | None,
        jobs: ActiveJobs,
        outbox: Outbox,
        ledger: Ledger,
        ledger_io: LedgerThread,
    ) -> None:
        if backend is None and zaps is None and cashu is None:
            raise PaymentError("a priced DVM needs an invoice backend, zaps or Cashu")
        if settings.mode == "after" and backend is None:
            raise PaymentError('mode "after" needs an invoice backend (the result carries it)')
        self.settings = settings
        self.backend = backend
        self.zaps = zaps
        self.cashu = cashu
        self._jobs = jobs
        self._outbox = outbox
        self._ledger = ledger
        self._io = ledger_io

    @property
    def pays_after(self) -> bool:
        return self.settings.mode == "after"

    # -- free allowance ----------------------------------------------------------------------

    async def covered_by_allowance(self, active: ActiveJob) -> bool:
        """True when the customer's daily free allowance pays this job (recorded as a
        ``free`` payment, so a restart and a re-count agree)."""
        job = active.job
        record = await self._io(self._ledger.payment, job.id)
        if record is not None:
            return record.method == "free"
        allowance = self.settings.free_jobs_per_day
        if allowance <= 0:
            return False
        used = await self._io(self._ledger.free_jobs_since, job.customer, time.time() - 86400.0)
        if used >= allowance:
            return False
        await self._io(self._ledger.record_invoice, job.id, kind="free", amount_msats=0)
        await self._io(self._ledger.record_paid, job.id, proof=f"free:{job.id}", kind="free")
        return True

    # -- pay after ---------------------------------------------------------------------------

    async def invoice_for_result(self, active: ActiveJob) -> bool:
        """Mode "after": issue (or find) the job's invoice, for the result's ``amount`` tag.
        False when no invoice could be issued (the job has then ended in `error`)."""
        try:
            invoice = await self._issue(active)
        except NostrImagegenError as exc:
            await self._fail(active, f"no invoice could be issued: {failure_reason(exc)}")
            return False
        active.amount_msats, active.bolt11 = invoice.amount_msats, invoice.bolt11
        return True

    # -- pay before --------------------------------------------------------------------------

    async def paid(self, active: ActiveJob, state: JobState) -> bool:
        """True once paid: the caller queues the job (a `processing` feedback was sent).
        Otherwise the job has ended here (`error`, or cancelled by the customer);
        ``CancelledError`` at shutdown leaves it `payment-required` in the ledger."""
        job = active.job
        assert active.amount_msats is not None
        try:
            if state is not JobState.PAYMENT_REQUIRED:
                await self._io(
                    self._ledger.transition, job.id, JobState.PAYMENT_REQUIRED,
                    amount_msats=active.amount_msats,
                )  # fmt: skip
            ok = await self._settle(active)
        except asyncio.CancelledError:
            if active.cancel_reason == "customer":
                await self._jobs.record_cancelled(active)
            else:
                self._jobs.forget(job.id)  # shutdown: stays payment-required, resumed later
            raise
        except PaymentRefused as exc:
            await self._fail(active, f"payment refused: {exc.reason}")
            return False
        except Exception as exc:
            logger.warning("payment for %.12s failed: %s", job.id, failure_reason(exc))
            await self._fail(active, f"payment could not be arranged: {failure_reason(exc)}")
            return False
        finally:
            active.waiter = None
        if ok:
            await self._outbox.progress(active, JobStatus.PROCESSING, message="payment received")
        return ok

    async def _settle(self, active: ActiveJob) -> bool:
        job = active.job
        amount = active.amount_msats
        assert amount is not None
        record = await self._io(self._ledger.payment, job.id)
        if record is not None and record.paid:
            return True  # paid before a crash: never asked for again
        token = job.request.tag_value("cashu")
        if token is not None and self.cashu is not None and record is None:
            redemption = await self.cashu.redeem(token, price_msats=amount)
            # The token's worth pays the price; the mint's swap fee, which makes what the
            # wallet kept (amount_msats) smaller, is the operator's to bear.
            if redemption.token_msats < amount:
                raise PaymentRefused(
                    f"the token is worth {redemption.token_msats} msats; the job costs {amount}"
                )
            if not await self._io(
                self._ledger.record_paid, job.id, proof=f"cashu:{redemption.token_hash}",
                kind="cashu", amount_msats=redemption.amount_msats,
            ):  # fmt: skip
                raise PaymentRefused("this Cashu token already paid another job")
            return True
        if self.backend is None and self.zaps is None:
            # Only Cashu is taken, and a token can only come in the request: nothing to wait
            # for, so no `payment-required` (it would promise a way to pay there is not).
            raise PaymentRefused(
                f'this job costs {amount} msats; pay it with a ["cashu", TOKEN] tag in the request'
            )
        invoice: Invoice | None = None
        if self.backend is not None:
            if record is not None and record.bolt11 is not None:
                invoice = _stored_invoice(record)
                if await self.backend.is_paid(invoice.payment_hash):
                    return await self._record_invoice_paid(job.id, invoice)
            else:
                invoice = await self._issue(active)
            active.amount_msats, active.bolt11 = invoice.amount_msats, invoice.bolt11
        elif record is None:
            await self._io(self._ledger.record_invoice, job.id, kind="zap", amount_msats=amount)
        issued_at = record.issued_at if record is not None else time.time()
        deadline = issued_at + self.settings.timeout_s
        if invoice is not None:
            deadline = min(deadline, invoice.expires_at)
        remaining = deadline - time.time()
        if remaining <= 0:
            raise PaymentError("the invoice expired unpaid")
        asked = await self._outbox.progress(
            active, JobStatus.PAYMENT_REQUIRED,
            amount_msats=active.amount_msats, bolt11=active.bolt11,
        )  # fmt: skip
        # NIP-90: the customer may zap the `payment-required` feedback or the request itself.
        zapped = (job.id,) if asked is None else (job.id, asked.id)
        return await self._wait(active, invoice, remaining, zapped)

    async def _wait(
        self,
        active: ActiveJob,
        invoice: Invoice | None,
        timeout_s: float,
        zapped: tuple[str, ...],
    ) -> bool:
        """Whichever comes first: the invoice paid, or a valid zap receipt for one of the
        events in ``zapped`` (the request, the `payment-required` feedback)."""
        job = active.job
        amount = active.amount_msats
        assert amount is not None
        waiters: list[Callable[[], Awaitable[bool]]] = []
        if invoice is not None and self.backend is not None:
            backend, paid_invoice = self.backend, invoice

            async def by_invoice() -> bool:
                if await backend.wait_paid(paid_invoice, timeout_s=timeout_s):
                    return await self._record_invoice_paid(job.id, paid_invoice)
                return False

            waiters.append(by_invoice)
        if self.zaps is not None:
            zaps = self.zaps

            def by_zap(event_id: str) -> Callable[[], Awaitable[bool]]:
                async def wait() -> bool:
                    payment = await zaps.wait_for(
                        event_id=event_id, payer_pubkey=job.customer, amount_msats=amount,
                        timeout_s=timeout_s,
                    )  # fmt: skip
                    if payment is None:
                        return False
                    return bool(
                        await self._io(
                            self._ledger.record_paid,
                            job.id,
                            proof=f"zap:{payment.receipt_id}",
                            kind="zap",
                            amount_msats=payment.amount_msats,
                        )
                    )

                return wait

            waiters.extend(by_zap(event_id) for event_id in zapped)
        if not waiters:
            raise PaymentError("no way to pay this job is configured")
        tasks = [asyncio.ensure_future(waiter()) for waiter in waiters]
        try:
            pending: set[asyncio.Future[bool]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.result():
                        return True
            raise PaymentError(
                f"the invoice expired unpaid (waited {timeout_s:.3g} s)"
                if invoice is not None
                else f"no zap arrived within {timeout_s:.3g} s"
            )
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def _record_invoice_paid(self, request_id: str, invoice: Invoice) -> bool:
        return bool(
            await self._io(
                self._ledger.record_paid,
                request_id,
                proof=f"ln:{invoice.payment_hash}",
                kind="invoice",
                amount_msats=invoice.amount_msats,
            )
        )

    async def _issue(self, active: ActiveJob) -> Invoice:
        """The job's one invoice: the stored one, or a new one stored before it is shown."""
        job = active.job
        record = await self._io(self._ledger.payment, job.id)
        if record is not None and record.bolt11 is not None:
            return _stored_invoice(record)
        assert self.backend is not None
        assert active.amount_msats is not None
        invoice = await self.backend.create_invoice(
            active.amount_msats,
            memo=f"{self.settings.memo} {job.id[:16]}",
            expiry_s=self.settings.invoice_expiry_s,
        )
        stored = await self._io(
            self._ledger.record_invoice, job.id, kind="invoice",
            amount_msats=invoice.amount_msats, bolt11=invoice.bolt11,
            payment_hash=invoice.payment_hash, expires_at=invoice.expires_at,
        )  # fmt: skip
        if stored.bolt11 is None:
            raise PaymentError("the job already has a payment of another kind")
        return _stored_invoice(stored)

    async def _fail(self, active: ActiveJob, reason: str) -> None:
        await self._jobs.answer_error(active.job, active.relay, reason, JobState.FAILED, active)


def _stored_invoice(record: PaymentRecord) -> Invoice:
    assert record.bolt11 is not None
    assert record.payment_hash is not None
    return Invoice(
        bolt11=record.bolt11,
        payment_hash=record.payment_hash,
        amount_msats=record.amount_msats,
        expires_at=record.expires_at if record.expires_at is not None else record.issued_at,
    )
