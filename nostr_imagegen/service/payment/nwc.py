"""NWC (NIP-47): invoices from any Nostr Wallet Connect wallet (Alby Hub, Coinos, Primal...),
over the library's relay pool. Messages are built and read by ``nostr.nip47`` (pure).

    make_invoice   {"amount": 21000, "description": "...", "expiry": 600}  -> invoice, hash
    lookup_invoice {"payment_hash": "..."}                                -> state / settled_at
    notifications  23197 (NIP-44) / 23196 (NIP-04) "payment_received"     -> a hint only

The encryption is negotiated from the wallet's info event (kind 13194, its ``encryption``
tag): NIP-44 v2 when offered, NIP-04 when the wallet has no tag (old wallets). A
notification only wakes the backend: every "paid" is ``lookup_invoice``'s answer, signed
by the wallet's key and encrypted to ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from nostr_imagegen.errors import NostrImagegenError, PaymentError
from nostr_imagegen.nostr.encryption import EncryptionScheme
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.nostr.nip47 import (
    NWC_INFO_KIND,
    NWC_NOTIFICATION_KIND,
    NWC_NOTIFICATION_NIP04_KIND,
    NWC_RESPONSE_KIND,
    NwcConnection,
    NwcResponse,
    build_nwc_request,
    parse_nwc_notification,
    parse_nwc_response,
    parse_nwc_uri,
)
from nostr_imagegen.service.payment.backend import Invoice, checked_invoice, decode_invoice
from nostr_imagegen.service.seams import RelayPoolLike

__all__ = ["NwcBackend", "NwcPayer"]

logger = logging.getLogger(__name__)

#: How long to wait for the wallet's info event before assuming NIP-44.
_INFO_WAIT_S = 3.0


class NwcBackend:
    """An ``InvoiceBackend`` on a NIP-47 wallet connection.

    ``NwcBackend.from_uri(uri)`` opens its own ``RelayPool`` on the URI's relays (started on
    first use); ``pool=`` shares a started one (``subscribe``/``publish``/``events``), which
    it then reads exclusively.
    """

    def __init__(
        self,
        connection: NwcConnection,
        *,
        pool: RelayPoolLike | None = None,
        poll_interval_s: float = 5.0,
        request_timeout_s: float = 20.0,
    ) -> None:
        self.connection = connection
        self.poll_interval_s = poll_interval_s
        self.request_timeout_s = request_timeout_s
        self._pool = pool
        self._own_pool: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._started = asyncio.Lock()
        self._waiting: dict[str, asyncio.Future[NwcResponse]] = {}
        self._hints: dict[str, asyncio.Event] = {}
        self._info = asyncio.Event()
        self._scheme = EncryptionScheme.NIP44

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> NwcBackend:
        """Parse the connection URI (``PaymentError`` if bad; the secret is never quoted)."""
        try:
            connection = parse_nwc_uri(uri)
        except NostrImagegenError as exc:
            raise PaymentError(f"bad wallet connection URI: {exc}") from None
        return cls(connection, **kwargs)

    def __repr__(self) -> str:
        return f"NwcBackend({self.connection!r})"

    # -- plumbing ---------------------------------------------------------------------------

    async def _start(self) -> RelayPoolLike:
        async with self._started:
            if self._pool is None:
                from nostr_imagegen.service.relay import RelayPool

                own = RelayPool(list(self.connection.relays), keys=self.connection.keys)
                await own.start()
                await own.wait_connected(timeout_s=self.request_timeout_s)
                self._own_pool = own
                self._pool = own
            if self._reader is None:
                me, wallet = self.connection.keys.public_key, self.connection.wallet_pubkey
                since = int(time.time()) - 60
                answers = Filter(
                    kinds=[NWC_RESPONSE_KIND, NWC_NOTIFICATION_KIND, NWC_NOTIFICATION_NIP04_KIND],
                    authors=[wallet], tags={"p": [me]}, since=since,
                )  # fmt: skip
                info = Filter(kinds=[NWC_INFO_KIND], authors=[wallet], limit=1)
                await self._pool.subscribe("nwc", [answers, info])
                self._reader = asyncio.create_task(self._read(self._pool), name="nwc-reader")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._info.wait(), _INFO_WAIT_S)
            return self._pool

    async def _read(self, pool: RelayPoolLike) -> None:
        async for _relay, event in pool.events():
            try:
                self._dispatch(event)
            except NostrImagegenError as exc:
                logger.debug("ignoring a wallet event %.12s: %s", event.id, exc)

    def _dispatch(self, event: Event) -> None:
        if event.pubkey != self.connection.wallet_pubkey:
            return
        if event.kind == NWC_INFO_KIND:
            offered = (event.tag_value("encryption") or "").split()
            # No tag: the wallet speaks NIP-04 only (NIP-47 "Encryption").
            nip44 = "nip44_v2" in offered
            self._scheme = EncryptionScheme.NIP44 if nip44 else EncryptionScheme.NIP04
            self._info.set()
        elif event.kind == NWC_RESPONSE_KIND:
            response = parse_nwc_response(event, self.connection)
            waiter = self._waiting.get(response.request_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(response)
        else:
            note = parse_nwc_notification(event, self.connection)
            payment_hash = note.notification.get("payment_hash")
            if note.notification_type == "payment_received" and isinstance(payment_hash, str):
                hint = self._hints.get(payment_hash.lower())
                if hint is not None:
                    hint.set()

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self._start()
        request = build_nwc_request(
            self.connection, method, params, scheme=self._scheme,
            expiration=int(time.time() + self.request_timeout_s),
        )  # fmt: skip
        waiter: asyncio.Future[NwcResponse] = asyncio.get_running_loop().create_future()
        self._waiting[request.id] = waiter
        try:
            outcome = await pool.publish(request, timeout_s=self.request_timeout_s)
            if not outcome.ok:
                raise PaymentError("no wallet relay accepted the NWC request")
            try:
                response = await asyncio.wait_for(waiter, self.request_timeout_s)
            except TimeoutError:
                raise PaymentError(f"the wallet did not answer {method} in time") from None
        finally:
            self._waiting.pop(request.id, None)
        if response.result_type != method:
            raise PaymentError(f"the wallet answered {response.result_type} to {method}")
        if not response.ok or response.result is None:
            raise PaymentError(
                f"the wallet refused {method}: {response.error_code}: {response.error_message}"
            )
        return response.result

    # -- InvoiceBackend ---------------------------------------------------------------------

    async def create_invoice(self, amount_msats: int, *, memo: str, expiry_s: int) -> Invoice:
        result = await self._call(
            "make_invoice",
            {"amount": int(amount_msats), "description": memo[:200], "expiry": int(expiry_s)},
        )
        bolt11 = result.get("invoice")
        if not isinstance(bolt11, str):
            raise PaymentError("the wallet's make_invoice answer has no invoice")
        payment_hash = result.get("payment_hash")
        return checked_invoice(
            bolt11,
            payment_hash=payment_hash if isinstance(payment_hash, str) else None,
            amount_msats=amount_msats,
        )

    async def is_paid(self, payment_hash: str) -> bool:
        result = await self._call("lookup_invoice", {"payment_hash": payment_hash.lower()})
        return result.get("state") == "settled" or bool(result.get("settled_at"))

    async def wait_paid(self, invoice: Invoice, *, timeout_s: float) -> bool:
        deadline = time.monotonic() + max(0.0, min(timeout_s, invoice.expires_at - time.time()))
        key = invoice.payment_hash.lower()
        hint = self._hints.setdefault(key, asyncio.Event())
        try:
            while True:
                hint.clear()
                if await self.is_paid(key):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hint.wait(), min(self.poll_interval_s, remaining))
        finally:
            self._hints.pop(key, None)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
            self._reader = None
        if self._own_pool is not None:
            await self._own_pool.close()
            self._own_pool = None


class NwcPayer:
    """The customer side: ``await payer(bolt11, max_msats)`` pays with ``pay_invoice`` from
    a NIP-47 wallet, after decoding the invoice and refusing one above ``max_msats``."""

    def __init__(self, uri: str, *, request_timeout_s: float = 60.0) -> None:
        self._wallet = NwcBackend.from_uri(uri, request_timeout_s=request_timeout_s)

    def __repr__(self) -> str:
        return f"NwcPayer({self._wallet.connection!r})"

    async def __call__(self, bolt11: str, max_msats: int | None = None) -> str:
        invoice = decode_invoice(bolt11)
        if max_msats is not None and invoice.amount_msats > max_msats:
            raise PaymentError(
                f"the invoice asks {invoice.amount_msats} msats, more than the {max_msats} allowed"
            )
        if invoice.expires_at < time.time():
            raise PaymentError("the invoice has expired")
        result = await self._wallet._call("pay_invoice", {"invoice": invoice.bolt11})
        if not isinstance(result.get("preimage"), str):
            raise PaymentError("the wallet's pay_invoice answer has no preimage")
        return invoice.payment_hash

    async def aclose(self) -> None:
        await self._wallet.aclose()
