"""Origins an operator trusts for input images: ``[fetch] allow_hosts = ["host:port", ...]``.

An input image URL normally has to resolve to public internet addresses only (``netguard``).
An operator who keeps images on an internal store lists its origin here, and URLs on exactly
that host and port skip the public-address rule; nothing else does::

    [fetch]
    allow_hosts = ["images.internal:8080", "10.0.0.5:9000", "[fd00::5]:443"]

An entry is ``host:port``: a DNS name (letters, digits, hyphens, dots), an IPv4 address in
dotted-quad form, or an IPv6 address in brackets (no zone), then a port from 1 to 65535. No
scheme, path, user name or wildcard. Entries are compared in a canonical form, so
``Images.Internal:8080`` and ``images.internal.:8080`` are one origin, and so are
``[FD00::0005]:443`` and ``[fd00::5]:443``:

    >>> normalize_origin("Images.Internal:8080")
    'images.internal:8080'
    >>> origin_key("FD00::0005", 443)
    '[fd00::5]:443'

This module is pure (no I/O); ``fetch.py`` compares every hop's host and port with the list.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from nostr_imagegen.errors import ConfigError

__all__ = ["MAX_ALLOW_HOSTS", "normalize_origin", "origin_key", "origin_port"]

#: An allow list is a short list of internal stores, not a second internet.
MAX_ALLOW_HOSTS: Final = 64

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
#: A label inet_aton would read as a number (``127``, ``0x7f``, ``017``).
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_PORT = re.compile(r"[0-9]{1,5}")
_MAX_NAME_CHARS: Final = 253


def normalize_origin(entry: str) -> str:
    """The canonical ``host:port`` of an ``allow_hosts`` entry, or ``ConfigError`` naming it."""
    if not isinstance(entry, str):
        raise ConfigError(f"allow_hosts entry {entry!r} must be a 'host:port' string")
    try:
        return _normalize(entry.strip())
    except _BadOrigin as exc:
        raise ConfigError(f"allow_hosts entry {entry!r} {exc}") from None


def origin_key(host: str, port: int) -> str:
    """The canonical ``host:port`` of a URL's host (as httpx gives it) and port, to compare
    with normalized entries. Not a validation: a host no entry can name matches none."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return f"[{IPv6Address(bare).compressed}]:{port}"
    except ValueError:
        pass
    try:
        return f"{IPv4Address(bare)}:{port}"
    except ValueError:
        return f"{bare.lower().rstrip('.')}:{port}"


def origin_port(origin: str) -> int:
    """The port of a normalized origin."""
    return int(origin.rpartition(":")[2])


class _BadOrigin(ValueError):
    """Why an entry is refused (``normalize_origin`` adds the entry itself)."""


def _normalize(text: str) -> str:
    if "://" in text:
        raise _BadOrigin("must be host:port without a scheme (like 'images.internal:8080')")
    if any(ch in text for ch in "/?#"):
        raise _BadOrigin("must be host:port without a path")
    if "@" in text:
        raise _BadOrigin("must be host:port without a user name")
    if text.startswith("["):
        host_text, close, rest = text[1:].partition("]")
        if not close or not rest.startswith(":"):
            raise _BadOrigin("must be [IPv6 address]:port")
        host, port_text = _ipv6(host_text), rest[1:]
    else:
        host_text, colon, port_text = text.rpartition(":")
        if not colon or not host_text:
            raise _BadOrigin("must be host:port (the port is required)")
        if ":" in host_text:
            raise _BadOrigin("must write an IPv6 address in brackets: [address]:port")
        host = _name_or_ipv4(host_text)
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise _BadOrigin("must end with a port from 1 to 65535")
    return f"{host}:{int(port_text)}"


def _ipv6(text: str) -> str:
    if "%" in text:
        raise _BadOrigin("may not carry an IPv6 zone index")
    try:
        return f"[{IPv6Address(text).compressed}]"
    except ValueError:
        raise _BadOrigin("has no valid IPv6 address in its brackets") from None


def _name_or_ipv4(text: str) -> str:
    name = text.lower().rstrip(".")
    labels = name.split(".")
    if labels[-1].isdigit() or all(_NUMERIC_LABEL.fullmatch(label) for label in labels):
        # Only the dotted quad: resolvers read 127.1, 2130706433 or 0x7f.1 as addresses too,
        # each in its own way, so such spellings are not accepted as names either.
        try:
            return str(IPv4Address(name))
        except ValueError:
            raise _BadOrigin("has a host that is neither a name nor a dotted-quad IPv4") from None
    if len(name) > _MAX_NAME_CHARS or not all(_LABEL.fullmatch(label) for label in labels):
        raise _BadOrigin("has a host that is not a DNS name (letters, digits, '-' and '.')")
    return name
