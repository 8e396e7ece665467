"""ZapWatcher without sockets (an in-memory pool: replays, shared pools, timeouts) and
fetch_lnurl_pubkey against an httpx MockTransport (LUD-16, allowsNostr, bounds)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from nostr_imagegen.errors import PaymentError
from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.service.payment.zaps import ZapWatcher, fetch_lnurl_pubkey, lnurlp_url
from nostr_imagegen.testing.zaps import zap_receipt, zap_request

PRICE = 21_000


class MemoryPool:
    """Records subscriptions; ``push`` feeds events to ``events()``."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.filters: dict[str, tuple[Filter, ...]] = {}

    async def subscribe(
        self, subscription_id: str, filters: Sequence[Filter], *, lookback_s: int | None = None
    ) -> None:
        self.filters[subscription_id] = tuple(filters)

    async def unsubscribe(self, subscription_id: str) -> None:
        self.filters.pop(subscription_id, None)

    async def publish(self, event: Event, **_: object) -> object:
        raise NotImplementedError

    async def events(self) -> AsyncIterator[tuple[str, Event]]:
        while True:
            yield "memory", await self.queue.get()


def _job(dvm: Keys) -> Event:
    return sign_event(UnsignedEvent(kind=7000, content=str(id(dvm))), dvm)


async def test_one_receipt_pays_one_wait_only() -> None:
    server, customer, dvm = Keys.generate(), Keys.generate(), Keys.generate()
    job = _job(dvm)
    pool = MemoryPool()
    watcher = ZapWatcher(pool, lnurl_pubkey=server.public_key, seen=lambda _id: False)
    waits = [
        asyncio.create_task(
            watcher.wait_for(
                event_id=job.id, payer_pubkey=customer.public_key, amount_msats=PRICE, timeout_s=2
            )
        )
        for _ in range(2)
    ]
    await asyncio.sleep(0.05)
    (flt,) = pool.filters["dvm-zap-receipts"]
    assert flt.to_dict() == {"kinds": [9735], "#e": [job.id]}
    request = zap_request(customer, recipient=dvm.public_key, event_id=job.id, amount_msats=PRICE)
    receipt = zap_receipt(server, request)
    await pool.queue.put(receipt)
    await pool.queue.put(receipt)  # a replay through another relay
    results = await asyncio.gather(*waits)
    assert sorted(r is None for r in results) == [False, True]
    assert pool.filters == {}  # no wait left: unsubscribed
    await watcher.close()


async def test_same_invoice_in_a_second_receipt_is_refused() -> None:
    server, customer, dvm = Keys.generate(), Keys.generate(), Keys.generate()
    job = _job(dvm)
    watcher = ZapWatcher(
        MemoryPool(), lnurl_pubkey=server.public_key, seen=lambda _id: False, consume=False
    )
    request = zap_request(customer, recipient=dvm.public_key, event_id=job.id, amount_msats=PRICE)
    first = zap_receipt(server, request)
    # The server re-signs the same paid invoice with another created_at: a new receipt id.
    second = sign_event(
        UnsignedEvent(kind=9735, tags=first.tags, created_at=first.created_at + 1), server
    )
    assert second.id != first.id
    args = {"event_id": job.id, "payer_pubkey": customer.public_key, "amount_msats": PRICE}
    task = asyncio.create_task(watcher.wait_for(**args, timeout_s=2))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    watcher.deliver(first)
    assert (await task) is not None
    task = asyncio.create_task(watcher.wait_for(**args, timeout_s=0.5))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    watcher.deliver(second)
    assert (await task) is None


async def test_receipt_delivered_before_the_wait_counts_and_timeout_is_none() -> None:
    server, customer, dvm = Keys.generate(), Keys.generate(), Keys.generate()
    job = _job(dvm)
    watcher = ZapWatcher(
        MemoryPool(), lnurl_pubkey=server.public_key, seen=lambda _id: False, consume=False
    )
    request = zap_request(customer, recipient=dvm.public_key, event_id=job.id, amount_msats=PRICE)
    watcher.deliver(sign_event(UnsignedEvent(kind=1, tags=(("e", job.id),)), customer))  # ignored
    watcher.deliver(zap_receipt(server, request))
    paid = await watcher.wait_for(
        event_id=job.id, payer_pubkey=customer.public_key, amount_msats=PRICE, timeout_s=1
    )
    assert paid is not None
    assert paid.event_id == job.id
    unpaid = await watcher.wait_for(
        event_id=_job(Keys.generate()).id,
        payer_pubkey=customer.public_key,
        amount_msats=PRICE,
        timeout_s=0.2,
    )
    assert unpaid is None


def test_watcher_refuses_bad_lnurl_pubkey() -> None:
    with pytest.raises(PaymentError, match="nostrPubkey"):
        ZapWatcher(MemoryPool(), lnurl_pubkey="npub1...", seen=lambda _id: False)


def _client(body: bytes | str, status: int = 200) -> httpx.AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == "https://wallet.example/.well-known/lnurlp/dvm"
        return httpx.Response(status, content=body if isinstance(body, bytes) else body.encode())

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


PUBKEY = "9630f464cca6a5147aa8a35f0bcdd3ce485324e732fd39e09233b1d848238f31"
GOOD = {
    "tag": "payRequest",
    "callback": "https://wallet.example/cb",
    "allowsNostr": True,
    "nostrPubkey": PUBKEY,
    "minSendable": 1000,
    "maxSendable": 10**9,
    "metadata": "[]",
}


async def test_fetch_lnurl_pubkey() -> None:
    async with _client(json.dumps(GOOD)) as client:
        assert await fetch_lnurl_pubkey("DVM@wallet.example", client=client) == PUBKEY


@pytest.mark.parametrize(
    ("body", "status", "match"),
    [
        (json.dumps({**GOOD, "allowsNostr": False}), 200, "does not allow zaps"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "allowsNostr"}), 200, "allowsNostr"),
        (json.dumps({**GOOD, "nostrPubkey": "npub1x"}), 200, "no valid nostrPubkey"),
        (json.dumps({**GOOD, "tag": "withdrawRequest"}), 200, "not an LNURL-pay"),
        ("[1]", 200, "not answer a JSON object"),
        ("<html>", 200, "did not answer JSON"),
        (json.dumps(GOOD), 404, "HTTP 404"),
        (b"{" + b" " * (70 * 1024), 200, "more than"),
    ],
)
async def test_fetch_lnurl_pubkey_refuses(body: str | bytes, status: int, match: str) -> None:
    async with _client(body, status) as client:
        with pytest.raises(PaymentError, match=match):
            await fetch_lnurl_pubkey("dvm@wallet.example", client=client)


async def test_fetch_lnurl_pubkey_times_out() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        with pytest.raises(PaymentError, match="did not answer within"):
            await fetch_lnurl_pubkey("dvm@wallet.example", client=client, timeout_s=0.1)


@pytest.mark.parametrize("lud16", ["dvm", "a@b@c", "dvm@", "@wallet.example", "d v@x.example",
                                   "dvm@localhost", "dvm@wallet.example/../x", 42])  # fmt: skip
def test_lnurlp_url_refuses_bad_addresses(lud16: object) -> None:
    with pytest.raises(PaymentError, match="name@domain"):
        lnurlp_url(lud16)  # type: ignore[arg-type]


def test_lnurlp_url() -> None:
    assert lnurlp_url("dvm@wallet.example") == "https://wallet.example/.well-known/lnurlp/dvm"
    assert lnurlp_url("a@x.onion") == "http://x.onion/.well-known/lnurlp/a"
