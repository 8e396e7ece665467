"""A NIP-47 wallet service for the tests: it answers ``make_invoice`` and ``lookup_invoice``
over a real relay and settles through a real LNbits wallet (its invoice key), and sends a
``payment_received`` notification (23197, or 23196 for a NIP-04 client) when one of its
invoices is paid. Written here from the NIP-47 text, not from the backend under test: it
reads requests and writes responses with the encryption module directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx

from nostr_imagegen.nostr.encryption import EncryptionScheme, decrypt, encrypt
from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.service.relay import RelayPool


class WalletService:
    def __init__(
        self, relay_url: str, lnbits_url: str, inkey: str, *, nip44: bool = True,
        adminkey: str | None = None,
    ) -> None:  # fmt: skip
        self.adminkey = adminkey  # given: pay_invoice works too (a customer's wallet)
        self.keys = Keys.generate()
        self.client = Keys.generate()  # the connection's client key (its secret goes in the URI)
        self.relay_url = relay_url
        self.lnbits_url = lnbits_url
        self.inkey = inkey
        self.nip44 = nip44
        self.requests: list[dict[str, Any]] = []
        self.schemes: list[EncryptionScheme] = []
        self._issued: dict[str, EncryptionScheme] = {}
        self._pool = RelayPool([relay_url], keys=self.keys)
        self._tasks: list[asyncio.Task[None]] = []
        self._http = httpx.AsyncClient(timeout=10)

    @property
    def uri(self) -> str:
        return (
            f"nostr+walletconnect://{self.keys.public_key}?relay={self.relay_url}"
            f"&secret={self.client.secret_hex()}"
        )

    async def __aenter__(self) -> WalletService:
        await self._pool.start()
        await self._pool.wait_connected(timeout_s=10)
        info = UnsignedEvent(
            kind=13194,
            tags=(("encryption", "nip44_v2 nip04"),) if self.nip44 else (),
            content="make_invoice lookup_invoice notifications",
        )
        await self._pool.publish(sign_event(info, self.keys))
        await self._pool.subscribe(
            "wallet", [Filter(kinds=[23194], tags={"p": [self.keys.public_key]})], lookback_s=5
        )
        self._tasks.append(asyncio.create_task(self._serve()))
        self._tasks.append(asyncio.create_task(self._watch()))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        await self._pool.close()
        await self._http.aclose()

    async def _lnbits(
        self, method: str, path: str, body: dict[str, Any] | None = None, key: str | None = None
    ) -> Any:
        response = await self._http.request(
            method, self.lnbits_url + path, json=body, headers={"X-Api-Key": key or self.inkey}
        )
        response.raise_for_status()
        return response.json()

    async def _serve(self) -> None:
        async for _relay, event in self._pool.events():
            if event.kind != 23194 or event.pubkey != self.client.public_key:
                continue
            plaintext, scheme = decrypt(event.content, self.keys, event.pubkey)
            self.schemes.append(scheme)
            request = json.loads(plaintext)
            self.requests.append(request)
            await self._answer(event, request, scheme)

    async def _answer(
        self, event: Event, request: dict[str, Any], scheme: EncryptionScheme
    ) -> None:
        method, params = request["method"], request.get("params", {})
        result: dict[str, Any] | None = None
        error: dict[str, str] | None = None
        if method == "make_invoice":
            created = await self._lnbits(
                "POST", "/api/v1/payments",
                {"out": False, "amount": -(-params["amount"] // 1000),
                 "memo": params.get("description", ""), "expiry": params.get("expiry", 600)},
            )  # fmt: skip
            self._issued[created["payment_hash"]] = scheme
            result = {
                "type": "incoming", "state": "pending", "invoice": created["bolt11"],
                "payment_hash": created["payment_hash"], "amount": created["amount"],
            }  # fmt: skip
        elif method == "lookup_invoice":
            status = await self._lnbits("GET", f"/api/v1/payments/{params['payment_hash']}")
            result = {
                "type": "incoming", "payment_hash": params["payment_hash"],
                "state": "settled" if status.get("paid") else "pending",
            }  # fmt: skip
        elif method == "pay_invoice" and self.adminkey is not None:
            paid = await self._lnbits(
                "POST", "/api/v1/payments", {"out": True, "bolt11": params["invoice"]},
                key=self.adminkey,
            )  # fmt: skip
            result = {"preimage": paid.get("preimage") or "", "fees_paid": 0}
        else:
            error = {"code": "NOT_IMPLEMENTED", "message": method}
        body = {"result_type": method, "error": error, "result": result}
        content = encrypt(json.dumps(body), self.keys, self.client.public_key, scheme)
        tags = (("p", self.client.public_key), ("e", event.id))
        await self._pool.publish(
            sign_event(UnsignedEvent(kind=23195, tags=tags, content=content), self.keys)
        )

    async def _watch(self) -> None:
        """Notify each invoice's settlement once (the backend must not need it to work)."""
        while True:
            await asyncio.sleep(0.2)
            for payment_hash, scheme in list(self._issued.items()):
                status = await self._lnbits("GET", f"/api/v1/payments/{payment_hash}")
                if not status.get("paid"):
                    continue
                del self._issued[payment_hash]
                note = {
                    "notification_type": "payment_received",
                    "notification": {"type": "incoming", "payment_hash": payment_hash},
                }
                kind = 23197 if scheme is EncryptionScheme.NIP44 else 23196
                content = encrypt(json.dumps(note), self.keys, self.client.public_key, scheme)
                event = UnsignedEvent(
                    kind=kind, tags=(("p", self.client.public_key),), content=content
                )
                await self._pool.publish(sign_event(event, self.keys))
