"""NIP-42 client authentication: the kind 22242 event that answers a relay's challenge.

The relay sends ``["AUTH", "<challenge>"]``; the client answers ``["AUTH", <signed event>]``
with::

    {"kind": 22242, "content": "",
     "tags": [["relay", "wss://relay.example.com/"], ["challenge", "challengestringhere"]]}

``created_at`` is left to ``sign_event`` (now), as NIP-42 asks. The challenge comes from the
network, so it is bounded; it is copied verbatim otherwise (the relay compares it exactly).
"""

from __future__ import annotations

from nostr_imagegen.errors import EventError
from nostr_imagegen.nostr.event import UnsignedEvent

__all__ = ["AUTH_KIND", "MAX_CHALLENGE_CHARS", "MAX_RELAY_URL_CHARS", "build_auth_event"]

AUTH_KIND = 22242
#: Real relays send 16 to 64 characters; anything past this is refused.
MAX_CHALLENGE_CHARS = 1024
MAX_RELAY_URL_CHARS = 2048


def build_auth_event(relay_url: str, challenge: str) -> UnsignedEvent:
    """The unsigned kind 22242 answer to ``challenge`` from the relay at ``relay_url``.

    Raises ``EventError`` for a relay URL that is not ``ws://``/``wss://`` (or too long) and for
    an empty or over-long challenge.
    """
    if not isinstance(relay_url, str) or not relay_url.lower().startswith(("wss://", "ws://")):
        raise EventError("relay url must start with wss:// or ws://")
    if len(relay_url) > MAX_RELAY_URL_CHARS or any(ch.isspace() for ch in relay_url):
        raise EventError(
            f"relay url must be at most {MAX_RELAY_URL_CHARS} characters without whitespace"
        )
    if not isinstance(challenge, str) or not challenge:
        raise EventError("auth challenge must be a non-empty string")
    if len(challenge) > MAX_CHALLENGE_CHARS:
        raise EventError(f"auth challenge is longer than {MAX_CHALLENGE_CHARS} characters")
    return UnsignedEvent(
        kind=AUTH_KIND, tags=(("relay", relay_url), ("challenge", challenge)), content=""
    )
