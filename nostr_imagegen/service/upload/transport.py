"""HTTP plumbing shared by the hosts that upload over HTTP (Blossom, NIP-96).

- ``http_url``: a configured server URL must be absolute ``http(s)`` without user info
  (``ConfigError`` otherwise); ``is_http_url`` asks the same of a URL a server answered with.
- ``http_errors``: one deadline for a whole exchange; httpx's errors become ``UploadError``
  (the message names what failed, never a key or token).
- ``read_bounded``: a host's JSON answer is read up to ``MAX_RESPONSE_BYTES`` and no further.
- ``reason``: a refusal as ``HTTP 413 (X-Reason: ...)`` (BUD-01 ``X-Reason``), cut short and
  stripped of control characters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import httpx

from nostr_imagegen.errors import ConfigError, UploadError
from nostr_imagegen.nostr.urls import HTTP_SCHEMES, is_url

__all__ = [
    "MAX_RESPONSE_BYTES",
    "MAX_URL_CHARS",
    "http_errors",
    "http_url",
    "is_http_url",
    "read_bounded",
    "reason",
    "use_client",
]

#: Upper bound on a JSON answer from an image host (descriptors and NIP-96 replies are small).
MAX_RESPONSE_BYTES: Final = 256 * 1024
#: Longest URL we accept from an image host's answer.
MAX_URL_CHARS: Final = 4096


def http_url(value: str, what: str) -> httpx.URL:
    """An absolute http(s) URL without user info, or ``ConfigError`` naming ``what``."""
    try:
        url = httpx.URL(value.strip())
    except (httpx.InvalidURL, TypeError, ValueError, AttributeError):
        raise ConfigError(f"{what} {value!r} is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host or url.userinfo:
        raise ConfigError(f"{what} {value!r} must be an http(s) URL without user info")
    return url


def is_http_url(value: str) -> bool:
    """Whether a URL a server sent us is a usable absolute http(s) URL."""
    return is_url(value, HTTP_SCHEMES, max_chars=MAX_URL_CHARS)


def reason(response: httpx.Response) -> str:
    """``HTTP 413 (X-Reason: ...)``, the reason cut short and stripped of control characters."""
    text = f"HTTP {response.status_code}"
    given = response.headers.get("x-reason", "")
    if given:
        printable = "".join(ch for ch in given if ch.isprintable())[:200]
        text += f" ({printable})"
    return text


async def read_bounded(response: httpx.Response, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """The body of ``response``, or ``UploadError`` as soon as it passes ``limit`` bytes."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadError(f"answer larger than {limit} bytes")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise UploadError(f"answer larger than {limit} bytes")
    return bytes(body)


@contextlib.asynccontextmanager
async def use_client(
    client: httpx.AsyncClient | None, timeout_s: float
) -> AsyncIterator[httpx.AsyncClient]:
    """The host's own ``client`` when it was given one, else a fresh one for this upload."""
    if client is not None:
        yield client
        return
    async with httpx.AsyncClient(timeout=timeout_s) as own:
        yield own


@contextlib.asynccontextmanager
async def http_errors(timeout_s: float) -> AsyncIterator[None]:
    """One deadline for a whole exchange; httpx errors become ``UploadError``."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError:
        raise UploadError(f"no answer within {timeout_s:g} seconds") from None
    except httpx.TimeoutException:
        raise UploadError("timed out") from None
    except httpx.HTTPError as exc:
        raise UploadError(f"request failed ({type(exc).__name__})") from None
