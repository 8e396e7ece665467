"""Opening and closing one websocket to a relay, the way both the pool and ``publish_once`` do.

    ws = await open_connection("wss://nos.lol", connect_timeout_s=10, ping_interval_s=30,
                               ping_timeout_s=20, hard_max_bytes=hard_max(512 * 1024),
                               public_only=False)

- HTTP redirects are not followed (a redirect could lead anywhere) and HTTP proxies from the
  environment are not used.
- ``public_only``: the host must resolve to public internet addresses only (``netguard``), and
  the socket goes to the address that was checked (a second DNS answer cannot redirect it).
- ``hard_max_bytes``: websockets closes the connection on a larger message; it cannot skip a
  message without buffering it, so this is a multiple of the frame limit the session applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as _ws_connect

from nostr_imagegen.errors import RelayError
from nostr_imagegen.service.netguard import is_public_address, parse_ip

__all__ = ["close_quietly", "describe", "hard_max", "open_connection", "short"]


class _NoRedirectConnect(_ws_connect):
    """websockets' connect without following HTTP redirects (a redirect could lead anywhere)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


async def _pinned_public_host(url: str) -> str:
    """Resolve the relay's host; every address must be public. Returns one to connect to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = parse_ip(host)
    if literal is not None:
        if not is_public_address(literal):
            raise RelayError(f"relay {url} is not on a public address")
        return str(literal)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RelayError(f"cannot resolve relay host {host!r}: {exc}") from None
    addresses = [parse_ip(str(info[4][0])) for info in infos]
    if not addresses or not all(a is not None and is_public_address(a) for a in addresses):
        raise RelayError(f"relay {url} resolves to a non-public address")
    return str(addresses[0])


async def open_connection(
    url: str,
    *,
    connect_timeout_s: float,
    ping_interval_s: float | None,
    ping_timeout_s: float | None,
    hard_max_bytes: int,
    public_only: bool,
) -> ClientConnection:
    """Connect to the relay at the normalized ``url`` within ``connect_timeout_s``."""
    kwargs: dict[str, Any] = {}
    async with asyncio.timeout(connect_timeout_s):
        if public_only:
            kwargs["host"] = await _pinned_public_host(url)
        return await _NoRedirectConnect(
            url,
            open_timeout=connect_timeout_s,
            ping_interval=ping_interval_s,
            ping_timeout=ping_timeout_s,
            close_timeout=2,
            max_size=hard_max_bytes,
            max_queue=16,
            proxy=None,
            user_agent_header=None,
            **kwargs,
        )


def hard_max(max_frame_bytes: int) -> int:
    """The websocket message size past which the connection is closed (see the module doc)."""
    return max(4 * max_frame_bytes, 1024 * 1024)


async def close_quietly(ws: ClientConnection) -> None:
    """Close ``ws``, waiting at most 2 s; a connection that is already gone is no error."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await ws.close()


def short(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters for a log line."""
    return text if len(text) <= limit else text[:limit] + "..."


def describe(exc: BaseException) -> str:
    """An exception as a short log-friendly text (its message, or its type's name)."""
    return short(str(exc) or type(exc).__name__)
