"""ZapWatcher over a real relay (nostr-relay on 127.0.0.1): a test "LNURL server" signs zap
receipts with its key and publishes them; a job still waiting is paid only by the valid one,
and a receipt already used is refused when presented again."""

from __future__ import annotations

import asyncio

import pytest

from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.payment.zaps import ZapWatcher
from nostr_imagegen.service.relay import RelayPool
from nostr_imagegen.testing.zaps import zap_receipt, zap_request

pytestmark = pytest.mark.integration

PRICE = 21_000


async def _publish(pool: RelayPool, event: Event) -> None:
    result = await pool.publish(event, timeout_s=10)
    assert result.ok, result


async def test_job_waiting_is_paid_only_by_the_valid_receipt(relay_url: str) -> None:
    server, customer, dvm = Keys.generate(), Keys.generate(), Keys.generate()
    forger = Keys.generate()
    job = sign_event(UnsignedEvent(kind=7000, tags=(("status", "payment-required"),)), dvm)
    other_job = sign_event(UnsignedEvent(kind=7000, content="other"), dvm)
    used: set[str] = set()
    async with RelayPool([relay_url]) as watch_pool, RelayPool([relay_url]) as server_pool:
        assert await watch_pool.wait_connected(timeout_s=10)
        assert await server_pool.wait_connected(timeout_s=10)
        watcher = ZapWatcher(watch_pool, lnurl_pubkey=server.public_key, seen=used.__contains__)
        waiting = asyncio.create_task(
            watcher.wait_for(
                event_id=job.id, payer_pubkey=customer.public_key, amount_msats=PRICE, timeout_s=30
            )
        )
        request = zap_request(
            customer, recipient=dvm.public_key, event_id=job.id, amount_msats=PRICE
        )
        forged = [
            zap_receipt(forger, request),  # signed by someone else
            zap_receipt(server, request, invoice_msats=PRICE // 2),  # invoice for less
            zap_receipt(server, request, hashed=request.to_json() + " "),  # description hash
            # A valid receipt, but its zap request paid for another event and it is relabelled
            # onto ours by its `e` tag only: the signed zap request still names the other.
            _relabelled(server, customer, dvm, other_job.id, job.id),
        ]
        for receipt in forged:
            await _publish(server_pool, receipt)
        await asyncio.sleep(1.0)
        assert not waiting.done(), "a forged receipt paid the job"
        valid = zap_receipt(server, request)
        await _publish(server_pool, valid)
        payment = await asyncio.wait_for(waiting, 15)
        assert payment is not None
        assert (payment.receipt_id, payment.amount_msats) == (valid.id, PRICE)
        assert payment.payer_pubkey == customer.public_key
        used.add(payment.receipt_id)  # what the ledger does with it

        await watcher.close()

    # The same receipt again, as after a restart: a new pool fetches it from the relay anew
    # (the old pool would drop it as a duplicate), and it is refused because the ledger has it.
    async with RelayPool([relay_url]) as fresh_pool:
        fresh = ZapWatcher(fresh_pool, lnurl_pubkey=server.public_key, seen=used.__contains__)
        again = await fresh.wait_for(
            event_id=job.id, payer_pubkey=customer.public_key, amount_msats=PRICE, timeout_s=3
        )
        await fresh.close()
    assert again is None


async def test_receipt_stored_before_the_wait_is_fetched(relay_url: str) -> None:
    server, customer, dvm = Keys.generate(), Keys.generate(), Keys.generate()
    job = sign_event(UnsignedEvent(kind=7000, content="paid early"), dvm)
    request = zap_request(customer, recipient=dvm.public_key, event_id=job.id, amount_msats=PRICE)
    receipt = zap_receipt(server, request)
    async with RelayPool([relay_url]) as pool:
        assert await pool.wait_connected(timeout_s=10)
        await _publish(pool, receipt)
    async with RelayPool([relay_url]) as pool:
        watcher = ZapWatcher(pool, lnurl_pubkey=server.public_key, seen=lambda _id: False)
        payment = await watcher.wait_for(
            event_id=job.id, payer_pubkey=customer.public_key, amount_msats=PRICE, timeout_s=15
        )
        await watcher.close()
    assert payment is not None
    assert payment.receipt_id == receipt.id


def _relabelled(server: Keys, customer: Keys, dvm: Keys, paid_for: str, claimed: str) -> Event:
    request = zap_request(customer, recipient=dvm.public_key, event_id=paid_for, amount_msats=PRICE)
    honest = zap_receipt(server, request)
    tags = tuple(("e", claimed) if t[0] == "e" else t for t in honest.tags)
    return sign_event(UnsignedEvent(kind=9735, tags=tags), server)
