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
from nostr_imagegen.nostr.urls import MAX_URL_CHARS, RELAY_SCHEMES, url_problem

__all__ = ["MAX_RELAY_URL_CHARS", "normalize_relay_url"]

MAX_RELAY_URL_CHARS: Final = MAX_URL_CHARS


def normalize_relay_url(url: str) -> str:
    """A relay URL checked and normalized: ``ws``/``wss``, a host, no credentials.

    Scheme and host are lowercased, a lone trailing ``/`` is dropped and the fragment removed,
    so the same relay written twice is one relay: ``normalize_relay_url("WSS://Nos.lol/")``
    is ``"wss://nos.lol"``. Raises ``RelayError`` for anything else.
    """
    if not isinstance(url, str):
        raise RelayError(f"a relay url must be a string, not {type(url).__name__}")
    text = url.strip()
    problem = url_problem(text, RELAY_SCHEMES, max_chars=MAX_RELAY_URL_CHARS)
    if problem is not None:
        raise RelayError(f"relay url {text[:80]!r} {problem}")
    parts = urlsplit(text)
    port = parts.port
    scheme = parts.scheme.lower()
    if parts.username is not None or parts.password is not None:
        raise RelayError("a relay url may not carry credentials")
    host = (parts.hostname or "").lower()  # url_problem made sure there is one
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    path = "" if parts.path == "/" else parts.path
    return urlunsplit((scheme, netloc, path, parts.query, ""))
