"""The payment flow in the runner, driven by fakes: invoices, restarts, pay-after, the free
allowance, and the zap and Cashu call sites.

The zap watcher and the Cashu redeemer here are small stand-ins that follow the interfaces
the real ``service.payment.zaps.ZapWatcher`` and ``service.payment.cashu.CashuRedeemer``
implement (they land from their own branch); the end-to-end tests against real receipts
and a real mint come with them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from _runner_fakes import FakeEngine, FakeHost, FakePool, make_request

from nostr_imagegen.errors import PaymentRefused
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.ledger import JobState, Ledger
from nostr_imagegen.service.payment.backend import Invoice
from nostr_imagegen.service.payment.flow import PaymentSettings
from nostr_imagegen.service.runner import JobRunner, RunnerOptions

PROVIDER = Keys.generate()
CUSTOMER = Keys.generate()
PRICE = 21_000


class FakeBackend:
    """An invoice backend whose invoices are paid when the test says so."""

    def __init__(self) -> None:
        self.created: list[Invoice] = []
        self.paid: set[str] = set()
        self.settled = asyncio.Event()

    async def create_invoice(self, amount_msats: int, *, memo: str, expiry_s: int) -> Invoice:
        number = len(self.created)
        invoice = Invoice(
            bolt11=f"lnbc{amount_msats // 1000}n1fake{number}",
            payment_hash=f"{number:064x}",
            amount_msats=amount_msats,
            expires_at=time.time() + expiry_s,
        )
        self.created.append(invoice)
        return invoice

    def pay(self, invoice: Invoice) -> None:
        self.paid.add(invoice.payment_hash)
        self.settled.set()

    async def is_paid(self, payment_hash: str) -> bool:
        return payment_hash in self.paid

    async def wait_paid(self, invoice: Invoice, *, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while invoice.payment_hash not in self.paid:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class StandInZapPayment:
    receipt_id: str
    amount_msats: int
    payer_pubkey: str
    event_id: str
    bolt11: str


class StandInZapWatcher:
    """Answers ``wait_for`` with the receipts the test queues (the real one reads relays)."""

    def __init__(self, seen: Callable[[str], bool]) -> None:
        self.receipts: asyncio.Queue[str] = asyncio.Queue()
        self.seen = seen
        self.asked: list[dict[str, Any]] = []

    async def wait_for(
        self, *, event_id: str, payer_pubkey: str, amount_msats: int, timeout_s: float
    ) -> StandInZapPayment | None:
        self.asked.append({"event_id": event_id, "amount_msats": amount_msats})
        try:
            receipt_id = await asyncio.wait_for(self.receipts.get(), timeout_s)
        except TimeoutError:
            return None
        return StandInZapPayment(receipt_id, amount_msats, payer_pubkey, event_id, "lnbc...")


@dataclass(frozen=True)
class StandInRedemption:
    amount_msats: int
    mint: str
    token_hash: str
    token_msats: int


class StandInCashu:
    def __init__(self, worth_msats: int | None) -> None:
        self.worth_msats = worth_msats  # None: the token is spent
        self.tokens: list[str] = []

    async def redeem(self, token: str, *, price_msats: int) -> StandInRedemption:
        self.tokens.append(token)
        if self.worth_msats is None:
            raise PaymentRefused("the token is already spent")
        # What the wallet keeps is the token's worth less a swap fee of 1 sat.
        return StandInRedemption(
            self.worth_msats - 1000, "https://mint.test", f"hash-of-{token}", self.worth_msats
        )


@pytest.fixture
async def start_runner(pool: FakePool, ledger: Ledger) -> AsyncIterator[Callable[..., Any]]:
    runners: list[JobRunner] = []

    async def start(**kwargs: Any) -> JobRunner:
        runner = JobRunner(
            keys=PROVIDER,
            pool=kwargs.pop("pool", pool),
            engine=FakeEngine(),
            hosts=[FakeHost()],
            ledger=ledger,
            options=RunnerOptions(progress_interval_s=0.0, shutdown_timeout_s=2.0),
            pricing=kwargs.pop("pricing", lambda job: PRICE),
            **kwargs,
        )
        await runner.start()
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        await runner.stop(timeout_s=1.0)


def _statuses(pool: FakePool, request_id: str) -> list[str | None]:
    return [event.tag_value("status") for event in pool.events_of(7000, request_id)]


async def test_invoice_paid_then_processing_then_one_result(
    pool: FakePool, ledger: Ledger, start_runner: Callable[..., Any]
) -> None:
    backend = FakeBackend()
    await start_runner(invoices=backend)
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: len(backend.created) == 1)
    await pool.wait_for(lambda: "payment-required" in _statuses(pool, request.id))
    [asked] = [
        e for e in pool.events_of(7000, request.id) if e.tag_value("status") == "payment-required"
    ]
    assert asked.first_tag("amount") == ("amount", str(PRICE), backend.created[0].bolt11)
    assert ledger.state(request.id) is JobState.PAYMENT_REQUIRED
    backend.pay(backend.created[0])
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)
    statuses = _statuses(pool, request.id)
    assert statuses.index("processing") > statuses.index("payment-required")
    assert len(pool.events_of(6100, request.id)) == 1
    record = ledger.payment(request.id)
    assert record is not None
    assert record.paid
    assert record.proof == f"ln:{0:064x}"
    assert len(backend.created) == 1


async def test_restart_while_waiting_reuses_the_invoice_and_sees_a_payment_made_meanwhile(
    pool: FakePool, ledger: Ledger, start_runner: Callable[..., Any]
) -> None:
    backend = FakeBackend()
    first = await start_runner(invoices=backend)
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: "payment-required" in _statuses(pool, request.id))
    await first.stop(timeout_s=1.0)
    assert ledger.state(request.id) is JobState.PAYMENT_REQUIRED
    backend.pay(backend.created[0])  # paid while the DVM was down
    second_pool = FakePool()
    await start_runner(invoices=backend, pool=second_pool)
    await second_pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)
    assert len(backend.created) == 1  # never invoiced twice
    assert "payment-required" not in _statuses(second_pool, request.id)
    assert len(second_pool.events_of(6100, request.id)) == 1


async def test_restart_of_an_unpaid_job_waits_on_the_same_invoice(
    pool: FakePool, ledger: Ledger, start_runner: Callable[..., Any]
) -> None:
    backend = FakeBackend()
    first = await start_runner(invoices=backend)
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: "payment-required" in _statuses(pool, request.id))
    await first.stop(timeout_s=1.0)
    second_pool = FakePool()
    await start_runner(invoices=backend, pool=second_pool)
    await second_pool.wait_for(lambda: "payment-required" in _statuses(second_pool, request.id))
    [again] = [
        e
        for e in second_pool.events_of(7000, request.id)
        if e.tag_value("status") == "payment-required"
    ]
    assert again.first_tag("amount") == ("amount", str(PRICE), backend.created[0].bolt11)
    backend.pay(backend.created[0])
    await second_pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)
    assert len(backend.created) == 1


async def test_unpaid_invoice_ends_in_error_at_the_timeout(
    pool: FakePool, ledger: Ledger, start_runner: Callable[..., Any]
) -> None:
    backend = FakeBackend()
    await start_runner(invoices=backend, payment_settings=PaymentSettings(timeout_s=0.3))
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: "error" in _statuses(pool, request.id))
    assert ledger.state(request.id) is JobState.FAILED
    [error] = [e for e in pool.events_of(7000, request.id) if e.tag_value("status") == "error"]
    assert "expired unpaid" in (error.first_tag("status") or ("", "", ""))[2]
    assert pool.events_of(6100, request.id) == []


async def test_pay_after_puts_amount_and_invoice_in_the_result(
    pool: FakePool, ledger: Ledger, start_runner: Callable[..., Any]
) -> None:
    backend = FakeBackend()
    await start_runner(invoices=backend, payment_settings=PaymentSettings(mode="after"))
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)
    [result] = pool.events_of(6100, request.id)
    assert result.first_tag("amount") == ("amount", str(PRICE), backend.created[0].bolt11)
    assert "payment-required" not in _statuses(pool, request.id)


async def test_free_allowance_per_customer_per_day(
    pool: FakePool, ledger: Ledger, start_runner: Callable[..., Any]
) -> None:
    backend = FakeBackend()
    await start_runner(invoices=backend, payment_settings=PaymentSettings(free_jobs_per_day=1))
    free, priced = make_request(CUSTOMER, prompt="one"), make_request(CUSTOMER, prompt="two")
    pool.deliver(free)
    await pool.wait_for(lambda: ledger.state(free.id) is JobState.PUBLISHED)
    assert "payment-required" not in _statuses(pool, free.id)
    assert pool.events_of(6100, free.id)[0].first_tag("amount") is None
    pool.deliver(priced)
    await pool.wait_for(lambda: "payment-required" in _statuses(pool, priced.id))
    assert len(backend.created) == 1
    other = make_request(Keys.generate(), prompt="someone else")
    pool.deliver(other)
    await pool.wait_for(lambda: ledger.state(other.id) is JobState.PUBLISHED)


async def test_zap_call_site_accepts_a_receipt_once_and_refuses_its_replay(
    pool: FakePool, ledger: Ledger, start_runner: Callable[..., Any]
) -> None:
    zaps = StandInZapWatcher(seen=lambda receipt: ledger.proof_used(f"zap:{receipt}"))
    await start_runner(zaps=zaps, payment_settings=PaymentSettings(timeout_s=5))
    first, second = make_request(CUSTOMER, prompt="a"), make_request(CUSTOMER, prompt="b")
    pool.deliver(first)
    await pool.wait_for(lambda: "payment-required" in _statuses(pool, first.id))
    [asked] = [
        e for e in pool.events_of(7000, first.id) if e.tag_value("status") == "payment-required"
    ]
    assert asked.first_tag("amount") == ("amount", str(PRICE))  # a zap: no invoice
    zaps.receipts.put_nowait("receipt-1")
    await pool.wait_for(lambda: ledger.state(first.id) is JobState.PUBLISHED)
    assert zaps.asked[0] == {"event_id": first.id, "amount_msats": PRICE}
    # The customer may zap the request or the payment-required feedback: both are watched.
    assert {"event_id": asked.id, "amount_msats": PRICE} in zaps.asked
    assert zaps.seen("receipt-1")
    pool.deliver(second)
    await pool.wait_for(lambda: "payment-required" in _statuses(pool, second.id))
    zaps.receipts.put_nowait("receipt-1")  # the same receipt again: refused by the ledger
    await pool.wait_for(lambda: ledger.state(second.id) is JobState.FAILED)
    record = ledger.payment(second.id)
    assert record is not None
    assert not record.paid


async def test_cashu_call_site_redeems_before_the_work_and_refuses_a_spent_token(
    pool: FakePool, ledger: Ledger, start_runner: Callable[..., Any]
) -> None:
    cashu = StandInCashu(worth_msats=PRICE)
    await start_runner(cashu=cashu)
    good = make_request(CUSTOMER, extra_tags=[("cashu", "cashuAgoodtoken")])
    pool.deliver(good)
    await pool.wait_for(lambda: ledger.state(good.id) is JobState.PUBLISHED)
    assert cashu.tokens == ["cashuAgoodtoken"]
    record = ledger.payment(good.id)
    assert record is not None
    assert record.method == "cashu"
    assert record.paid
    cashu.worth_msats = None
    spent = make_request(CUSTOMER, prompt="again", extra_tags=[("cashu", "cashuAspent")])
    pool.deliver(spent)
    await pool.wait_for(lambda: "error" in _statuses(pool, spent.id))
    [error] = [e for e in pool.events_of(7000, spent.id) if e.tag_value("status") == "error"]
    assert "already spent" in str(error.first_tag("status"))


async def test_short_cashu_token_is_refused(
    pool: FakePool, ledger: Ledger, start_runner: Callable[..., Any]
) -> None:
    await start_runner(cashu=StandInCashu(worth_msats=PRICE - 1000))
    request = make_request(CUSTOMER, extra_tags=[("cashu", "cashuAshort")])
    pool.deliver(request)
    await pool.wait_for(lambda: "error" in _statuses(pool, request.id))
    assert ledger.state(request.id) is JobState.FAILED
    [error] = [e for e in pool.events_of(7000, request.id) if e.tag_value("status") == "error"]
    assert str(PRICE) in str(error.first_tag("status"))
