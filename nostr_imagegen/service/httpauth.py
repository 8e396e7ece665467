"""Nostr HTTP authorization headers: Blossom (BUD-11, kind 24242) and NIP-98 (kind 27235).

Pure functions (no I/O). The wire form of both is ``Authorization: Nostr <base64 of the
signed event's JSON>``; they differ in the event and in the base64 alphabet:

Blossom upload token (BUD-11)::

    {"kind": 24242, "content": "Upload image 9f86d0....png",
     "tags": [["t", "upload"], ["x", "<sha256>"], ["expiration", "<unix>"],
              ["server", "cdn.example.com"]], ...}
    Authorization: Nostr <base64url, no padding>

The current BUD-11 text asks for base64url without padding; servers written against older
texts decode standard padded base64. ``BlossomHost`` sends base64url first and retries once
with padded standard base64 when a server answers 401.

NIP-98 token (used by NIP-96 uploads)::

    {"kind": 27235, "content": "",
     "tags": [["u", "https://host/api/upload"], ["method", "POST"], ["payload", "<sha256>"]]}
    Authorization: Nostr <standard base64>

NIP-98 says ``payload`` is the hex sha256 of the request body; NIP-96 says, for uploads, the
hash of the file rather than of the whole multipart body. We follow NIP-96 there: the payload
is the file's hex sha256 (what nostr.build and other NIP-96 servers compare against).
"""

from __future__ import annotations

import base64
import time

from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.kinds import BLOSSOM_AUTH_KIND, NIP98_AUTH_KIND
from nostr_imagegen.nostr.signer import Signer

__all__ = [
    "BLOSSOM_AUTH_KIND",
    "NIP98_AUTH_KIND",
    "authorization_header",
    "blossom_upload_auth",
    "nip98_auth",
]


def blossom_upload_auth(
    keys: Signer,
    *,
    sha256: str,
    server_domain: str | None = None,
    ttl_s: int = 300,
    now: int | None = None,
    content: str = "Upload image",
) -> Event:
    """A signed BUD-11 ``upload`` token for one blob, scoped to one server when given.

    ``created_at`` is one second in the past: BUD-11 servers require it to be "in the past",
    and a server whose clock lags ours by a moment would otherwise refuse a fresh token.
    """
    when = int(time.time()) if now is None else now
    tags: list[tuple[str, ...]] = [
        ("t", "upload"),
        ("x", sha256),
        ("expiration", str(when + ttl_s)),
    ]
    if server_domain:
        tags.append(("server", server_domain.lower()))
    template = UnsignedEvent(kind=BLOSSOM_AUTH_KIND, tags=tuple(tags), content=content)
    return sign_event(template, keys, created_at=when - 1)


def nip98_auth(
    keys: Signer,
    *,
    url: str,
    method: str,
    payload_sha256: str | None = None,
    now: int | None = None,
) -> Event:
    """A signed NIP-98 token for one request (``u`` must equal the request URL exactly)."""
    tags: list[tuple[str, ...]] = [("u", url), ("method", method.upper())]
    if payload_sha256 is not None:
        tags.append(("payload", payload_sha256))
    template = UnsignedEvent(kind=NIP98_AUTH_KIND, tags=tuple(tags), content="")
    return sign_event(template, keys, created_at=int(time.time()) if now is None else now)


def authorization_header(event: Event, *, urlsafe_unpadded: bool) -> str:
    """``Nostr <base64>``: base64url without padding (BUD-11) or standard padded (NIP-98)."""
    raw = event.to_json().encode("utf-8")
    if urlsafe_unpadded:
        encoded = base64.urlsafe_b64encode(raw).rstrip(b"=")
    else:
        encoded = base64.b64encode(raw)
    return "Nostr " + encoded.decode("ascii")
