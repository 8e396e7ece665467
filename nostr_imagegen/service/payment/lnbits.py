"""LNbits (https://lnbits.com): invoices from the operator's wallet, payments from a customer's.

The wire form (LNbits 1.x REST; the key goes in the ``X-Api-Key`` header, never a URL)::

    POST /api/v1/payments       {"out": false, "amount": 21, "memo": "...", "expiry": 600}
         -> {"payment_hash": "3de0...", "bolt11": "lnbc210n1...", ...}   (amount in sats)
    GET  /api/v1/payments/<payment_hash>   -> {"paid": true, ...}
    POST /api/v1/payments       {"out": true, "bolt11": "lnbc..."}       (admin key: pay)
    WS   /api/v1/ws/<payment_hash>         <- {"pending": false, "status": "success"}

Settlement: LNbits pushes a message on the payment hash's websocket channel, but anyone can
push to any channel without a key, so a message is only a hint: every "paid" is confirmed
by ``GET /api/v1/payments/<hash>`` with the wallet's own key. Without the websocket (or
when it drops) the backend polls every ``poll_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx

from nostr_imagegen.errors import PaymentError
from nostr_imagegen.service.payment.backend import (
    Invoice,
    check_amount,
    checked_invoice,
    decode_invoice,
    whole_sats,
)

__all__ = ["LnbitsBackend", "LnbitsPayer"]

logger = logging.getLogger(__name__)

_MAX_RESPONSE_BYTES = 256 * 1024


class _LnbitsApi:
    """One LNbits wallet key over httpx; errors become ``PaymentError`` without the key."""

    def __init__(self, url: str, key: str, *, timeout_s: float, client: httpx.AsyncClient | None):
        if not url.startswith(("http://", "https://")):
            raise PaymentError(f"the LNbits URL must be http(s), not {url!r}")
        self.url = url.rstrip("/")
        self.__key = key
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, key=<hidden>)"

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = await self._client.request(
                method, self.url + path, json=body, headers={"X-Api-Key": self.__key}
            )
        except httpx.HTTPError as exc:
            raise PaymentError(
                f"LNbits at {self.url} is unreachable: {type(exc).__name__}"
            ) from None
        if len(response.content) > _MAX_RESPONSE_BYTES:
            raise PaymentError(f"LNbits at {self.url} answered with an oversized body")
        try:
            document = response.json()
        except ValueError:
            document = None
        if response.status_code >= 300:
            detail = document.get("detail") if isinstance(document, dict) else None
            raise PaymentError(
                f"LNbits refused {method} {path.split('/')[-1] if 'payments/' in path else path}:"
                f" HTTP {response.status_code}" + (f" ({str(detail)[:200]})" if detail else "")
            )
        return document

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


class LnbitsBackend:
    """An ``InvoiceBackend`` on an LNbits wallet, with its *invoice* (read) key.

    >>> backend = LnbitsBackend("https://lnbits.example", invoice_key)
    >>> invoice = await backend.create_invoice(21000, memo="job ab12", expiry_s=600)
    >>> await backend.wait_paid(invoice, timeout_s=600)
    """

    def __init__(
        self,
        url: str,
        invoice_key: str,
        *,
        websocket: bool = True,
        poll_interval_s: float = 2.0,
        timeout_s: float = 15.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._api = _LnbitsApi(url, invoice_key, timeout_s=timeout_s, client=client)
        self.url = self._api.url
        self.websocket = websocket
        self.poll_interval_s = poll_interval_s

    def __repr__(self) -> str:
        return f"LnbitsBackend({self.url!r}, invoice_key=<hidden>)"

    async def create_invoice(self, amount_msats: int, *, memo: str, expiry_s: int) -> Invoice:
        sats = whole_sats(amount_msats)
        document = await self._api.request(
            "POST",
            "/api/v1/payments",
            {"out": False, "amount": sats, "memo": memo[:200], "expiry": int(expiry_s)},
        )
        if not isinstance(document, dict):
            raise PaymentError("LNbits answered the invoice request with no invoice")
        bolt11 = document.get("bolt11") or document.get("payment_request")
        if not isinstance(bolt11, str):
            raise PaymentError("LNbits answered the invoice request with no bolt11")
        payment_hash = document.get("payment_hash")
        return checked_invoice(
            bolt11,
            payment_hash=payment_hash if isinstance(payment_hash, str) else None,
            amount_msats=sats * 1000,
        )

    async def is_paid(self, payment_hash: str) -> bool:
        if len(payment_hash) != 64 or any(c not in "0123456789abcdefABCDEF" for c in payment_hash):
            raise PaymentError("a payment hash is 64 hex characters")
        document = await self._api.request("GET", f"/api/v1/payments/{payment_hash.lower()}")
        return isinstance(document, dict) and document.get("paid") is True

    async def wait_paid(self, invoice: Invoice, *, timeout_s: float) -> bool:
        deadline = time.monotonic() + max(0.0, min(timeout_s, invoice.expires_at - time.time()))
        hints: asyncio.Queue[None] = asyncio.Queue()
        listener = (
            asyncio.create_task(self._listen(invoice.payment_hash, hints), name="lnbits-ws")
            if self.websocket
            else None
        )
        try:
            while True:
                if await self.is_paid(invoice.payment_hash):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    # A websocket message wakes us early; the REST check above decides.
                    await asyncio.wait_for(hints.get(), min(self.poll_interval_s, remaining))
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(BaseException):
                    await listener

    async def _listen(self, payment_hash: str, hints: asyncio.Queue[None]) -> None:
        """Forward every message on the payment hash's channel as a hint (unauthenticated:
        never trusted as proof). Reconnects quietly; polling covers the gaps."""
        import websockets

        ws_url = "ws" + self.url[len("http") :] + f"/api/v1/ws/{payment_hash}"
        while True:
            try:
                async with websockets.connect(ws_url, max_size=64 * 1024, open_timeout=10) as ws:
                    hints.put_nowait(None)  # connected: check once (paid before we listened?)
                    async for _message in ws:
                        hints.put_nowait(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("LNbits websocket %s: %s", self.url, type(exc).__name__)
            await asyncio.sleep(self.poll_interval_s)

    async def aclose(self) -> None:
        await self._api.aclose()


class LnbitsPayer:
    """The customer side: pay a bolt11 from an LNbits wallet with its *admin* key.

    ``await payer(bolt11, max_msats)`` decodes the invoice first and refuses (``PaymentError``)
    one above ``max_msats``; returns the payment hash once LNbits reports it paid.
    """

    def __init__(
        self,
        url: str,
        admin_key: str,
        *,
        timeout_s: float = 60.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._api = _LnbitsApi(url, admin_key, timeout_s=timeout_s, client=client)
        self.url = self._api.url

    def __repr__(self) -> str:
        return f"LnbitsPayer({self.url!r}, admin_key=<hidden>)"

    async def __call__(self, bolt11: str, max_msats: int | None = None) -> str:
        invoice = decode_invoice(bolt11)
        check_amount(invoice.amount_msats)
        if max_msats is not None and invoice.amount_msats > max_msats:
            raise PaymentError(
                f"the invoice asks {invoice.amount_msats} msats, more than the {max_msats} allowed"
            )
        if invoice.expires_at < time.time():
            raise PaymentError("the invoice has expired")
        document = await self._api.request(
            "POST", "/api/v1/payments", {"out": True, "bolt11": invoice.bolt11}
        )
        if not isinstance(document, dict):
            raise PaymentError("LNbits answered the payment with nothing")
        status = await self._api.request("GET", f"/api/v1/payments/{invoice.payment_hash}")
        if not (isinstance(status, dict) and status.get("paid") is True):
            raise PaymentError("LNbits did not complete the payment")
        return invoice.payment_hash

    async def aclose(self) -> None:
        await self._api.aclose()
