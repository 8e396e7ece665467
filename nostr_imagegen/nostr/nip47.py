"""NIP-47 (Nostr Wallet Connect) messages, pure: the connection URI, requests, responses and
notifications. No sockets: a backend sends what ``build_nwc_request`` signs and feeds what
relays return to ``parse_nwc_response`` / ``parse_nwc_notification``.

The connection URI (a secret: it holds the client's key)::

    nostr+walletconnect://<wallet pubkey hex>?relay=wss%3A%2F%2Frelay.example&secret=<hex>

A request (kind 23194) to the wallet service, content encrypted (NIP-44 v2, or NIP-04 for
old wallets; the ``encryption`` tag says which)::

    {"kind": 23194, "tags": [["p", "<wallet>"], ["encryption", "nip44_v2"]],
     "content": enc({"method": "make_invoice", "params": {"amount": 21000, "expiry": 600}})}

Its response (kind 23195, ``e`` = the request id)::

    {"result_type": "make_invoice", "error": null,
     "result": {"invoice": "lnbc...", "payment_hash": "...", "amount": 21000, ...}}

Notifications: kind 23197 (NIP-44) or 23196 (NIP-04), ``p`` = the client::

    {"notification_type": "payment_received", "notification": {"payment_hash": "...", ...}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nostr_imagegen.errors import EncryptionError, EventError, KeyFormatError
from nostr_imagegen.nostr.encryption import EncryptionScheme, decrypt, encrypt
from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.hexkeys import is_hex64
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.urls import RELAY_SCHEMES, is_url

__all__ = [
    "NWC_INFO_KIND",
    "NWC_NOTIFICATION_KIND",
    "NWC_NOTIFICATION_NIP04_KIND",
    "NWC_REQUEST_KIND",
    "NWC_RESPONSE_KIND",
    "NwcConnection",
    "NwcError",
    "NwcNotification",
    "NwcResponse",
    "build_nwc_request",
    "parse_nwc_notification",
    "parse_nwc_response",
    "parse_nwc_uri",
]

NWC_INFO_KIND = 13194
NWC_REQUEST_KIND = 23194
NWC_RESPONSE_KIND = 23195
NWC_NOTIFICATION_NIP04_KIND = 23196
NWC_NOTIFICATION_KIND = 23197

_SCHEME = "nostr+walletconnect"
_MAX_URI_CHARS = 4096
_MAX_RELAYS = 8


class NwcError(EventError):
    """A NIP-47 URI or message is malformed (never quotes the secret)."""


@dataclass(frozen=True, slots=True)
class NwcConnection:
    """A parsed connection URI. ``keys`` is the client's secret: never printed."""

    wallet_pubkey: str
    relays: tuple[str, ...]
    keys: Keys
    lud16: str | None = None

    def __repr__(self) -> str:
        return f"NwcConnection(wallet={self.wallet_pubkey[:12]}..., relays={self.relays!r})"


@dataclass(frozen=True, slots=True)
class NwcResponse:
    """A decrypted response: ``result`` on success, ``error_code``/``error_message`` else."""

    request_id: str
    result_type: str
    result: dict[str, Any] | None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None and self.result is not None


@dataclass(frozen=True, slots=True)
class NwcNotification:
    notification_type: str
    notification: dict[str, Any]
    scheme: EncryptionScheme


def parse_nwc_uri(uri: str) -> NwcConnection:
    """Parse ``nostr+walletconnect://<pubkey>?relay=...&secret=...`` (``NwcError`` if bad)."""
    if not isinstance(uri, str) or len(uri) > _MAX_URI_CHARS:
        raise NwcError("not a wallet connection URI")
    parts = urlsplit(uri.strip())
    if parts.scheme.lower() != _SCHEME:
        raise NwcError(f"a wallet connection URI starts with {_SCHEME}://")
    wallet = (parts.netloc or parts.path.lstrip("/")).lower()
    if not is_hex64(wallet):
        raise NwcError("the wallet connection URI does not name a 64-hex wallet pubkey")
    query = parse_qs(parts.query)
    relays = tuple(dict.fromkeys(query.get("relay", [])))[:_MAX_RELAYS]
    if not relays or not all(is_url(url, RELAY_SCHEMES) for url in relays):
        raise NwcError("the wallet connection URI needs ws:// or wss:// relay parameters")
    secrets = query.get("secret", [])
    if len(secrets) != 1:
        raise NwcError("the wallet connection URI needs exactly one secret")
    try:
        keys = Keys.parse(secrets[0])
    except KeyFormatError:
        raise NwcError("the wallet connection URI's secret is not a valid key") from None
    lud16 = query.get("lud16", [None])[0]
    return NwcConnection(wallet_pubkey=wallet, relays=relays, keys=keys, lud16=lud16)


def build_nwc_request(
    connection: NwcConnection,
    method: str,
    params: dict[str, Any],
    *,
    scheme: EncryptionScheme = EncryptionScheme.NIP44,
    expiration: int | None = None,
    created_at: int | None = None,
) -> Event:
    """A signed kind 23194 request, its content encrypted to the wallet with ``scheme``."""
    payload = json.dumps({"method": method, "params": params}, separators=(",", ":"))
    content = encrypt(payload, connection.keys, connection.wallet_pubkey, scheme)
    tags: list[tuple[str, ...]] = [("p", connection.wallet_pubkey)]
    tags.append(("encryption", "nip44_v2" if scheme is EncryptionScheme.NIP44 else "nip04"))
    if expiration is not None:
        tags.append(("expiration", str(expiration)))
    template = UnsignedEvent(kind=NWC_REQUEST_KIND, tags=tuple(tags), content=content)
    return sign_event(template, connection.keys, created_at=created_at)


def _decrypted_object(event: Event, connection: NwcConnection) -> tuple[dict[str, Any], Any]:
    if event.pubkey != connection.wallet_pubkey:
        raise NwcError("the event is not from the connected wallet")
    if connection.keys.public_key not in [t[1] for t in event.tags_named("p") if len(t) > 1]:
        raise NwcError("the event is not addressed to this connection")
    try:
        plaintext, scheme = decrypt(event.content, connection.keys, connection.wallet_pubkey)
        document = json.loads(plaintext)
    except (EncryptionError, ValueError) as exc:
        raise NwcError(f"unreadable wallet message: {type(exc).__name__}") from None
    if not isinstance(document, dict):
        raise NwcError("a wallet message is a JSON object")
    return document, scheme


def parse_nwc_response(event: Event, connection: NwcConnection) -> NwcResponse:
    """Decrypt and check a kind 23195 response (the caller verified the signature)."""
    if event.kind != NWC_RESPONSE_KIND:
        raise NwcError(f"kind {event.kind} is not a NIP-47 response")
    request_id = event.tag_value("e")
    if request_id is None or not is_hex64(request_id):
        raise NwcError("a NIP-47 response names its request in an e tag")
    document, _ = _decrypted_object(event, connection)
    result_type = document.get("result_type")
    if not isinstance(result_type, str):
        raise NwcError("a NIP-47 response has a result_type")
    error = document.get("error")
    if isinstance(error, dict):
        return NwcResponse(
            request_id, result_type, None,
            error_code=str(error.get("code") or "OTHER")[:64],
            error_message=str(error.get("message") or "")[:500],
        )  # fmt: skip
    result = document.get("result")
    if not isinstance(result, dict):
        raise NwcError("a NIP-47 response without an error has a result object")
    return NwcResponse(request_id, result_type, result)


def parse_nwc_notification(event: Event, connection: NwcConnection) -> NwcNotification:
    """Decrypt and check a kind 23197 (NIP-44) or 23196 (NIP-04) notification."""
    if event.kind not in (NWC_NOTIFICATION_KIND, NWC_NOTIFICATION_NIP04_KIND):
        raise NwcError(f"kind {event.kind} is not a NIP-47 notification")
    document, scheme = _decrypted_object(event, connection)
    kind_of = document.get("notification_type")
    body = document.get("notification")
    if not isinstance(kind_of, str) or not isinstance(body, dict):
        raise NwcError("a NIP-47 notification has a notification_type and a notification")
    return NwcNotification(kind_of, body, scheme)
