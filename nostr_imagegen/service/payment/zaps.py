"""Zap payments (NIP-57): learn the LNURL server's ``nostrPubkey``, then wait for a receipt.

    lnurl_pubkey = await fetch_lnurl_pubkey("dvm@getalby.example")
    watcher = ZapWatcher(pool, lnurl_pubkey=lnurl_pubkey, seen=ledger_has_receipt)
    payment = await watcher.wait_for(event_id=feedback.id, payer_pubkey=customer,
                                     amount_msats=21000, timeout_s=600)   # None: not paid

The LUD-16 address ``name@domain`` is read at ``https://domain/.well-known/lnurlp/name``::

    {"tag": "payRequest", "callback": "https://...", "allowsNostr": true,
     "nostrPubkey": "<64 hex>", "minSendable": 1000, "maxSendable": 100000000, ...}

``ZapWatcher`` keeps one subscription, ``{"kinds": [9735], "#e": [<every awaited id>]}``,
replaced as waits start and end, with no ``since``: a receipt published before the wait
began (or before a restart) is still fetched. Each receipt is checked by
``validate_zap_receipt`` against each wait for its event; one ``seen(receipt_id)`` reports used,
or whose receipt id or bolt11 this watcher already paid a wait with, is refused (a replay).
The caller records the returned payment (the ledger) before it acts on it.

The watcher reads ``pool.events()`` itself: give it a pool of its own. A program that reads a
shared pool's events passes ``consume=False`` and hands kind 9735 events to ``deliver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from nostr_imagegen.errors import PaymentError, ZapReceiptInvalid
from nostr_imagegen.imagejob.zaps import ZapPayment, validate_zap_receipt
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.nostr.hexkeys import is_hex64
from nostr_imagegen.nostr.kinds import ZAP_RECEIPT_KIND
from nostr_imagegen.nostr.messages import MAX_FILTER_VALUES, Filter
from nostr_imagegen.service.seams import RelayPoolLike

__all__ = ["ZapWatcher", "fetch_lnurl_pubkey"]

logger = logging.getLogger(__name__)

#: The subscription id the watcher holds on its pool.
SUBSCRIPTION_ID = "dvm-zap-receipts"
#: Receipts kept for waits that start after their receipt arrived (a shared pool's events).
_RECENT_RECEIPTS = 1000
#: Receipt ids and invoices already paid out, remembered against replays within this process.
_PAID_MEMORY = 100_000
#: A LNURL-pay answer is a small JSON object; a larger body is refused.
MAX_LNURL_BYTES = 64 * 1024

# LUD-16: the name is a-z0-9-_.+ ; the domain a plain host name (an .onion is fetched over http).
_NAME = re.compile(r"[a-z0-9\-_.+]{1,64}")
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z0-9\-]{2,63}")


@dataclass(eq=False)
class _Wait:
    event_id: str
    payer_pubkey: str
    amount_msats: int
    done: asyncio.Future[ZapPayment] = field(repr=False)


class ZapWatcher:
    """Waits for valid, unused zap receipts for job events, over ``pool``.

    ``lnurl_pubkey``: the LNURL server's ``nostrPubkey`` (``fetch_lnurl_pubkey``). ``seen``:
    whether a receipt id already paid for something (the ledger). ``recipient_pubkey``: when
    given, zap requests must name it in ``p`` (for LNURL servers that sign receipts for many
    users with one key). ``consume``: read ``pool.events()`` (a pool of the watcher's own).
    """

    def __init__(
        self,
        pool: RelayPoolLike,
        *,
        lnurl_pubkey: str,
        seen: Callable[[str], bool],
        recipient_pubkey: str | None = None,
        consume: bool = True,
    ) -> None:
        if not is_hex64(lnurl_pubkey):
            raise PaymentError(f"the LNURL nostrPubkey {lnurl_pubkey!r} is not 64 lowercase hex")
        self._pool = pool
        self._lnurl_pubkey = lnurl_pubkey
        self._seen = seen
        self._recipient = recipient_pubkey
        self._consume = consume
        self._waits: dict[str, list[_Wait]] = {}
        self._recent: OrderedDict[str, Event] = OrderedDict()
        self._paid: OrderedDict[str, None] = OrderedDict()
        self._reader: asyncio.Task[None] | None = None
        self._subscribed: tuple[str, ...] = ()
        self._sub_lock = asyncio.Lock()

    async def wait_for(
        self, *, event_id: str, payer_pubkey: str, amount_msats: int, timeout_s: float
    ) -> ZapPayment | None:
        """The first valid, unused receipt paying ``amount_msats`` or more for ``event_id`` by
        ``payer_pubkey``; ``None`` after ``timeout_s``."""
        if not is_hex64(event_id):
            raise PaymentError(f"event id {event_id!r} is not 64 lowercase hex")
        wait = _Wait(
            event_id, payer_pubkey, amount_msats, asyncio.get_running_loop().create_future()
        )
        self._waits.setdefault(event_id, []).append(wait)
        try:
            for receipt in [r for r in self._recent.values() if _tagged_events(r) & {event_id}]:
                self._offer(receipt, [wait])
            if not wait.done.done():
                await self._resubscribe()
                self._start_reader()
            return await asyncio.wait_for(asyncio.shield(wait.done), timeout_s)
        except TimeoutError:
            return None
        finally:
            waits = self._waits.get(event_id, [])
            if wait in waits:
                waits.remove(wait)
            if not waits:
                self._waits.pop(event_id, None)
            if not wait.done.done():
                wait.done.cancel()
            with contextlib.suppress(Exception):
                await self._resubscribe()

    def deliver(self, event: Event) -> None:
        """Hand the watcher a kind 9735 event (from a pool it does not read itself)."""
        if event.kind != ZAP_RECEIPT_KIND:
            return
        events = _tagged_events(event)
        if not events:
            return
        self._recent[event.id] = event
        self._recent.move_to_end(event.id)
        while len(self._recent) > _RECENT_RECEIPTS:
            self._recent.popitem(last=False)
        waits = [w for e in events for w in self._waits.get(e, ()) if not w.done.done()]
        if waits:
            self._offer(event, waits)

    async def close(self) -> None:
        """Stop reading the pool (the pool itself is the caller's)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None

    # -- internals -----------------------------------------------------------------------------

    def _offer(self, receipt: Event, waits: list[_Wait]) -> None:
        """Pay the first of ``waits`` that ``receipt`` validly pays, unless it is a replay."""
        for wait in waits:
            try:
                payment = validate_zap_receipt(
                    receipt,
                    lnurl_pubkey=self._lnurl_pubkey,
                    expected_msats=wait.amount_msats,
                    payer_pubkey=wait.payer_pubkey,
                    event_id=wait.event_id,
                    recipient_pubkey=self._recipient,
                )
            except ZapReceiptInvalid as exc:
                logger.info("zap receipt %s refused: %s", receipt.id, exc.reason)
                continue
            if receipt.id in self._paid or payment.bolt11 in self._paid or self._seen(receipt.id):
                logger.warning("zap receipt %s refused: it already paid for a job", receipt.id)
                return
            self._remember(receipt.id)
            self._remember(payment.bolt11)
            wait.done.set_result(payment)
            logger.info(
                "zap receipt %s pays %d msats for %s",
                receipt.id,
                payment.amount_msats,
                wait.event_id,
            )
            return

    def _remember(self, key: str) -> None:
        self._paid[key] = None
        while len(self._paid) > _PAID_MEMORY:
            self._paid.popitem(last=False)

    async def _resubscribe(self) -> None:
        """One REQ naming every awaited event (the newest ones if there are too many)."""
        async with self._sub_lock:
            wanted = tuple(self._waits)[-MAX_FILTER_VALUES:]
            if wanted == self._subscribed:
                return
            if wanted:
                flt = Filter(kinds=[ZAP_RECEIPT_KIND], tags={"e": list(wanted)})
                await self._pool.subscribe(SUBSCRIPTION_ID, [flt])
            else:
                unsubscribe = getattr(self._pool, "unsubscribe", None)
                if unsubscribe is not None:
                    await unsubscribe(SUBSCRIPTION_ID)
            self._subscribed = wanted

    def _start_reader(self) -> None:
        if self._consume and (self._reader is None or self._reader.done()):
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for _relay, event in self._pool.events():
            try:
                self.deliver(event)
            except Exception:  # one odd receipt must not stop the watching of all others
                logger.exception("zap receipt %s could not be handled", event.id)


def _tagged_events(event: Event) -> set[str]:
    return {tag[1] for tag in event.tags_named("e") if len(tag) > 1}


async def fetch_lnurl_pubkey(
    lud16: str, *, client: httpx.AsyncClient | None = None, timeout_s: float = 10.0
) -> str:
    """The ``nostrPubkey`` of the LNURL-pay endpoint behind the lightning address ``lud16``.

    Raises ``PaymentError`` when the address is malformed, the endpoint cannot be read (time
    and size bounded, no redirects), or it does not allow zaps (``allowsNostr`` true and a
    valid ``nostrPubkey``).
    """
    url = lnurlp_url(lud16)
    own = client is None
    http = client or httpx.AsyncClient(follow_redirects=False, trust_env=False)
    try:
        async with asyncio.timeout(timeout_s):
            async with http.stream("GET", url, headers={"Accept": "application/json"}) as answer:
                if answer.status_code != 200:
                    raise PaymentError(f"{url} answered HTTP {answer.status_code}")
                body = bytearray()
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_LNURL_BYTES:
                        raise PaymentError(f"{url} answered more than {MAX_LNURL_BYTES} bytes")
    except TimeoutError:
        raise PaymentError(f"{url} did not answer within {timeout_s} s") from None
    except httpx.HTTPError as exc:
        raise PaymentError(f"{url} could not be read: {type(exc).__name__}") from exc
    finally:
        if own:
            await http.aclose()
    try:
        data = json.loads(bytes(body))
    except (ValueError, RecursionError):
        raise PaymentError(f"{url} did not answer JSON") from None
    if not isinstance(data, dict):
        raise PaymentError(f"{url} did not answer a JSON object")
    if data.get("tag") != "payRequest":
        raise PaymentError(f"{url} is not an LNURL-pay endpoint (tag {data.get('tag')!r})")
    if data.get("allowsNostr") is not True:
        raise PaymentError(f"{lud16} does not allow zaps (allowsNostr is not true)")
    pubkey = data.get("nostrPubkey")
    if not is_hex64(pubkey):
        raise PaymentError(f"{lud16} has no valid nostrPubkey (64 lowercase hex)")
    assert isinstance(pubkey, str)
    return pubkey


def lnurlp_url(lud16: str) -> str:
    """``name@domain`` -> ``https://domain/.well-known/lnurlp/name`` (LUD-16; http for .onion)."""
    if not isinstance(lud16, str) or lud16.count("@") != 1:
        raise PaymentError(f"lightning address {str(lud16)[:80]!r} is not name@domain")
    name, domain = lud16.lower().split("@")
    if not _NAME.fullmatch(name) or not _DOMAIN.fullmatch(domain):
        raise PaymentError(f"lightning address {lud16[:80]!r} is not name@domain (LUD-16)")
    scheme = "http" if domain.endswith(".onion") else "https"
    return f"{scheme}://{domain}/.well-known/lnurlp/{name}"
