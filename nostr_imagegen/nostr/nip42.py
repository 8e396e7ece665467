"""NIP-42 client authentication: the kind 22242 event that answers a relay's challenge.

The relay sends ``["AUTH", "<challenge>"]``; the client answers ``["AUTH", <signed event>]``
with::

    {"kind": 22242, "content": "",
     "tags": [["relay", "wss://relay.example.com/"], ["challenge", "challengestringhere"]]}

``created_at`` is left to ``sign_event`` (now), as NIP-42 asks; sign it with ``Keys`` or any
other ``Signer``. The challenge comes from the network, so it is bounded; it is copied
verbatim otherwise (the relay compares it exactly).
"""

from __future__ import annotations

from nostr_imagegen.errors import EventError
from nostr_imagegen.nostr.event import UnsignedEvent
from nostr_imagegen.nostr.kinds import AUTH_KIND
from nostr_imagegen.nostr.urls import MAX_URL_CHARS, RELAY_SCHEMES, url_problem

__all__ = ["AUTH_KIND", "MAX_CHALLENGE_CHARS", "MAX_RELAY_URL_CHARS", "build_auth_event"]

#: Real relays send 16 to 64 characters; anything past this is refused.
MAX_CHALLENGE_CHARS = 1024
MAX_RELAY_URL_CHARS = MAX_URL_CHARS


def build_auth_event(relay_url: str, challenge: str) -> UnsignedEvent:
    """The unsigned kind 22242 answer to ``challenge`` from the relay at ``relay_url``.

    Raises ``EventError`` for a relay URL that is not a ``ws://``/``wss://`` URL
    (nostr_imagegen.nostr.urls) and for an empty or over-long challenge.
    """
    problem = url_problem(relay_url, RELAY_SCHEMES, max_chars=MAX_RELAY_URL_CHARS)
    if problem is not None:
        raise EventError(f"relay url {problem}")
    if not isinstance(challenge, str) or not challenge:
        raise EventError("auth challenge must be a non-empty string")
    if len(challenge) > MAX_CHALLENGE_CHARS:
        raise EventError(f"auth challenge is longer than {MAX_CHALLENGE_CHARS} characters")
    return UnsignedEvent(
        kind=AUTH_KIND, tags=(("relay", relay_url), ("challenge", challenge)), content=""
    )
