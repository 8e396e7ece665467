"""Relay URLs: the one check and normal form every relay URL goes through.

    >>> normalize_relay_url("WSS://Nos.lol/")
    'wss://nos.lol'
    >>> normalize_relay_url("ws://[::1]:8080/")
    'ws://[::1]:8080'

The same relay written twice is one relay; a URL from a stranger (a request's ``relays`` tag)
that is not a plain ``ws://``/``wss://`` URL is refused before anything connects to it.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

from nostr_imagegen.errors import RelayError

__all__ = ["MAX_RELAY_URL_CHARS", "normalize_relay_url"]

MAX_RELAY_URL_CHARS: Final = 2048


def normalize_relay_url(url: str) -> str:
    """A relay URL checked and normalized: ``ws``/``wss``, a host, no credentials.

    Scheme and host are lowercased, a lone trailing ``/`` is dropped and the fragment removed,
    so the same relay written twice is one relay: ``normalize_relay_url("WSS://Nos.lol/")``
    is ``"wss://nos.lol"``. Raises ``RelayError`` for anything else.
    """
    if not isinstance(url, str):
        raise RelayError("a relay url must be a string")
    text = url.strip()
    if not text or len(text) > MAX_RELAY_URL_CHARS:
        raise RelayError(f"a relay url has 1 to {MAX_RELAY_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise RelayError("a relay url may not contain whitespace or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise RelayError(f"invalid relay url: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise RelayError(f"a relay url must start with ws:// or wss://, got {scheme or 'none'!r}")
    if not parts.hostname:
        raise RelayError("a relay url needs a host")
    if parts.username is not None or parts.password is not None:
        raise RelayError("a relay url may not carry credentials")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    path = "" if parts.path == "/" else parts.path
    return urlunsplit((scheme, netloc, path, parts.query, ""))
