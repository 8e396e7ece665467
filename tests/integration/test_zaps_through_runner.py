"""Zap payments end to end: a priced JobRunner on a real relay (nostr-relay on 127.0.0.1)
whose ``zaps=`` is the real ``ZapWatcher`` on a RelayPool of its own, as
``service.payment.setup`` builds it, and no invoice backend. A test "LNURL server" key signs
receipts holding real signed bolt11 invoices (``nostr_imagegen.testing.zaps``). What is checked
is what the customer sees (the feedback statuses, the one result) and what the ledger keeps.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from dvm_harness import (  # noqa: F401 - fixtures
    Customer,
    Dvm,
    GatedEngine,
    query_relay,
    tiny_engine_fixture,
    tiny_model_folder_fixture,
)

from nostr_imagegen.imagejob.feedback import ParsedFeedback
from nostr_imagegen.imagejob.results import JobStatus
from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.client import JobOutcome, build_request
from nostr_imagegen.service.ledger import JobState
from nostr_imagegen.service.payment.flow import PaymentSettings
from nostr_imagegen.service.payment.zaps import ZapWatcher
from nostr_imagegen.service.relay import RelayPool
from nostr_imagegen.testing.zaps import zap_receipt, zap_request

pytestmark = pytest.mark.integration

SMALL = (("size", "64x64"),)
PRICE = 21_000
#: How long a job waits for its zap: enough for the forged receipts and the valid one.
TIMEOUT_S = 12.0


class Watching:
    """A customer's job in flight: its feedback as it arrives, its outcome when done."""

    def __init__(self, customer: Customer, request: Event, timeout_s: float) -> None:
        self.feedback: list[tuple[Event, ParsedFeedback]] = []
        self.task: asyncio.Task[JobOutcome] = asyncio.create_task(
            customer.submit(request, timeout_s=timeout_s, on_feedback=self._seen)
        )

    def _seen(self, event: Event, parsed: ParsedFeedback) -> None:
        self.feedback.append((event, parsed))

    def statuses(self) -> list[JobStatus | None]:
        return [parsed.status for _, parsed in self.feedback]

    async def payment_required(self, timeout_s: float = 30) -> tuple[Event, ParsedFeedback]:
        async with asyncio.timeout(timeout_s):
            while True:
                for event, parsed in self.feedback:
                    if parsed.status is JobStatus.PAYMENT_REQUIRED:
                        return event, parsed
                assert not self.task.done(), self.task.result()
                await asyncio.sleep(0.02)


async def _publish(pool: RelayPool, event: Event) -> None:
    result = await pool.publish(event, timeout_s=10)
    assert result.ok, result


def _relabelled(server: Keys, receipt: Event, event_id: str) -> Event:
    """``receipt`` re-signed by the LNURL server with its ``e`` tag pointing at ``event_id``:
    the same paid invoice and zap request presented as the payment of another job."""
    tags = tuple(("e", event_id) if t[0] == "e" else t for t in receipt.tags)
    return sign_event(UnsignedEvent(kind=9735, tags=tags), server)


@pytest.mark.parametrize("zapped", ["feedback", "request"])
async def test_zap_pays_a_priced_job_once_and_a_replay_pays_nothing(
    relay_url: str, tmp_path: Path, tiny_engine: Any, zapped: str
) -> None:
    server, forger = Keys.generate(), Keys.generate()
    engine = GatedEngine(tiny_engine)
    engine.gate.set()
    dvm_keys = Keys.generate()
    holder: dict[str, Dvm] = {}

    def seen(receipt_id: str) -> bool:  # what setup.payment_pieces passes
        ledger = holder["dvm"].ledger
        assert ledger is not None
        return ledger.proof_used(f"zap:{receipt_id}")

    async with RelayPool([relay_url]) as zap_pool, RelayPool([relay_url]) as server_pool:
        assert await server_pool.wait_connected(timeout_s=10)
        watcher = ZapWatcher(
            zap_pool, lnurl_pubkey=server.public_key, seen=seen,
            recipient_pubkey=dvm_keys.public_key,
        )  # fmt: skip
        dvm = Dvm(
            [relay_url], tmp_path, engine, keys=dvm_keys,
            pricing=lambda job: PRICE, zaps=watcher,
            payment_settings=PaymentSettings(timeout_s=TIMEOUT_S),
        )  # fmt: skip
        holder["dvm"] = dvm
        try:
            async with dvm, Customer([relay_url]) as customer:
                assert dvm.ledger is not None
                request = build_request(customer.keys, prompt="paid by zap", params=SMALL)
                job = Watching(customer, request, timeout_s=60)
                feedback, asked = await job.payment_required()
                assert asked.amount_msats == PRICE
                assert asked.bolt11 is None  # no invoice backend: the amount only
                amount_tag = feedback.first_tag("amount")
                assert amount_tag is not None
                assert list(amount_tag) == ["amount", str(PRICE)]

                target = feedback.id if zapped == "feedback" else request.id
                zap = zap_request(
                    customer.keys, recipient=dvm_keys.public_key, event_id=target,
                    amount_msats=PRICE,
                )  # fmt: skip
                await _publish(server_pool, zap_receipt(forger, zap))  # wrong signer
                short = zap_request(
                    customer.keys, recipient=dvm_keys.public_key, event_id=target,
                    amount_msats=PRICE // 2,
                )  # fmt: skip
                await _publish(server_pool, zap_receipt(server, short))  # wrong amount
                await asyncio.sleep(1.5)
                assert JobStatus.PROCESSING not in job.statuses(), "a forged zap paid the job"
                assert dvm.state(request.id) is JobState.PAYMENT_REQUIRED
                assert engine.calls == []

                valid = zap_receipt(server, zap)
                await _publish(server_pool, valid)
                outcome = await job.task
                assert outcome.result is not None, outcome.error
                statuses = [parsed.status for _, parsed in outcome.feedback]
                asked_at = statuses.index(JobStatus.PAYMENT_REQUIRED)
                assert JobStatus.PROCESSING in statuses[asked_at + 1 :]
                assert JobStatus.ERROR not in statuses
                assert engine.calls == [request.id]
                record = dvm.ledger.payment(request.id)
                assert record is not None
                assert record.paid
                assert (record.method, record.proof) == ("zap", f"zap:{valid.id}")
                assert record.amount_msats == PRICE

                # A second job, "paid" with the receipt that already paid the first: the
                # same event again, and the LNURL server's signature over it relabelled.
                second = build_request(customer.keys, prompt="replayed zap", params=SMALL)
                replay = Watching(customer, second, timeout_s=60)
                second_feedback, _ = await replay.payment_required()
                await server_pool.publish(valid, timeout_s=10)  # a duplicate to the relay
                other = second_feedback.id if zapped == "feedback" else second.id
                await _publish(server_pool, _relabelled(server, valid, other))
                refused = await replay.task
                assert refused.result is None
                assert refused.error is not None
                assert "no zap arrived" in refused.error
                assert JobStatus.PROCESSING not in [p.status for _, p in refused.feedback]
                assert dvm.state(second.id) is JobState.FAILED
                second_record = dvm.ledger.payment(second.id)
                assert second_record is None or not second_record.paid
                assert engine.calls == [request.id]  # never worked
        finally:
            await watcher.close()
    results = await query_relay(relay_url, {"kinds": [6100], "#e": [request.id, second.id]})
    assert [event.id for event in results] == [outcome.result.id]
