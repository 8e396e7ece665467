"""One home for URL checks: relay URLs (``ws``/``wss``) and image URLs (``http``/``https``).

    >>> url_problem("wss://relay.example", RELAY_SCHEMES) is None
    True
    >>> url_problem("https://relay.example", RELAY_SCHEMES)
    'must start with wss:// or ws://'
    >>> is_url("https:///no-host.png", HTTP_SCHEMES)
    False

A URL passes when it is a str of at most ``max_chars`` printable ASCII characters without
spaces, ``urllib.parse.urlsplit`` reads it (a port, if any, is a number up to 65535), its
scheme (any case) is one of ``schemes`` and it names a host. That is syntax only: whether an
address may be fetched is the service's safe fetcher's decision.

``url_problem`` says what is wrong in words that follow the value in a message, so each
caller raises its own error: ``JobRejected`` for a request, ``EventError`` for an event we
build, ``MessageError`` for a relay session, ``ValueError`` in a pydantic validator.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

__all__ = ["HTTP_SCHEMES", "MAX_URL_CHARS", "RELAY_SCHEMES", "is_url", "url_problem"]

#: Relays speak websockets.
RELAY_SCHEMES = ("wss", "ws")
#: Images are fetched and published over HTTP.
HTTP_SCHEMES = ("https", "http")
#: A longer URL is refused (browsers cap URLs near 2 KiB too).
MAX_URL_CHARS = 2048


def url_problem(
    value: object, schemes: Collection[str], *, max_chars: int = MAX_URL_CHARS
) -> str | None:
    """What keeps ``value`` from being a URL with one of ``schemes``, or None when it is one.

    The answer reads after the value: ``f"relay {url!r} {problem}"``.
    """
    if not isinstance(value, str):
        return f"is not a string but {type(value).__name__}"
    if not value:
        return "is empty"
    if len(value) > max_chars:
        return f"is longer than {max_chars} characters"
    # Every character from "!" to "~": ASCII, printable (no controls, no DEL), not a space.
    if not value.isascii() or not value.isprintable() or " " in value:
        return "is not a URL (it has whitespace, control or non-ASCII characters)"
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not a number up to 65535 raises ValueError here
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in schemes:
        return "must start with " + " or ".join(f"{scheme}://" for scheme in schemes)
    if not parts.hostname:
        return "has no host"
    return None


def is_url(value: object, schemes: Collection[str], *, max_chars: int = MAX_URL_CHARS) -> bool:
    """True when ``url_problem`` finds nothing wrong."""
    return url_problem(value, schemes, max_chars=max_chars) is None
