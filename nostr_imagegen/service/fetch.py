"""Fetch a customer's input image (img2img) from a URL, treating URL and server as hostile.

    >>> fetched = await fetch_image("https://cdn.example.com/cat.png")
    >>> fetched.image.size, fetched.mime, fetched.sha256
    ((768, 512), 'image/png', '9f86d0...')

What happens, hop by hop (at most ``policy.max_redirects`` redirects, each one re-checked):

1. The URL must be ``http``/``https`` (``file:``, ``data:``, ``ftp:``... are refused), carry no
   user name or password, and be at most ``max_url_length`` characters.
2. The host name is resolved (``resolver``, default ``loop.getaddrinfo``); if ANY resolved
   address is not public (see ``netguard``: loopback, private, CGNAT, link-local and cloud
   metadata, multicast, reserved, unique-local, IPv4 hidden in IPv6...) the URL is refused,
   unless this hop's host and port are exactly an origin in ``policy.allow_hosts`` (see
   ``origins``): an internal store the operator trusts.
3. The request goes to the validated IP itself, with the original ``Host`` header and TLS
   SNI (``extensions={"sni_hostname": host}``; the certificate is verified against the
   host name). A second DNS answer cannot send us elsewhere (DNS rebinding).
4. Redirects are never followed by httpx; we follow ``Location`` ourselves from step 1.
5. The body is refused early by ``Content-Length`` and read as a bounded stream; compressed
   transfer encodings are refused (no gzip bombs); the whole fetch has one deadline.
6. Pillow opens the bytes with only the allowed decoders (the real format decides, not
   ``Content-Type``), the pixel count is checked from the header BEFORE decoding, and
   Pillow's own decompression-bomb guard stays on. The result is a loaded RGB image
   (EXIF orientation applied, transparency flattened onto white).

Every refusal is a ``FetchError`` whose message a customer can read; it names the URL's host
but never a resolved internal address.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address

import httpx
from PIL import Image, ImageOps, UnidentifiedImageError

from nostr_imagegen.errors import ConfigError, FetchError
from nostr_imagegen.service.netguard import is_public_address, parse_ip
from nostr_imagegen.service.origins import (
    MAX_ALLOW_HOSTS,
    normalize_origin,
    origin_key,
    origin_port,
)

__all__ = [
    "SUPPORTED_IMAGE_MIMES",
    "FetchPolicy",
    "FetchedImage",
    "Resolver",
    "fetch_image",
    "system_resolver",
]

logger = logging.getLogger(__name__)

MiB = 1024 * 1024

#: Pillow format name -> MIME type, for the decoders we are willing to run on hostile bytes.
_FORMAT_MIMES: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
SUPPORTED_IMAGE_MIMES: frozenset[str] = frozenset(_FORMAT_MIMES.values())

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Content-Types that are obviously not an image; anything else is left to Pillow to judge.
_NOT_IMAGE_PREFIXES = ("text/", "audio/", "video/", "multipart/", "font/", "model/")
#: How many of a host's validated addresses we try to connect to before giving up.
_MAX_CONNECT_ATTEMPTS = 3
#: Pillow's default decompression-bomb threshold (its warning level).
_PILLOW_DEFAULT_MAX_PIXELS = 89_478_485

#: ``await resolver(host, port)`` -> the IP addresses (as text) the host name resolves to.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the operating system (``loop.getaddrinfo``); the default resolver."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for fetching one input image. The defaults suit a public DVM.

    ``allow_hosts``: origins (``"images.internal:8080"``, ``"[fd00::5]:443"``; see
    ``origins``) that skip the public-address rule, an internal image store the operator
    trusts. Every hop is checked on its own, so a redirect from such an origin to any other
    private or loopback address or port is still refused. Kept in canonical form; a bad
    entry is a ``ConfigError`` naming it.

    ``allow_private_addresses=True`` turns the address check off (for a demo or tests on
    127.0.0.1); never enable it on a service that accepts jobs from strangers.
    """

    max_bytes: int = 20 * MiB
    timeout_s: float = 20.0
    connect_timeout_s: float = 5.0
    max_redirects: int = 3
    max_pixels: int = 40_000_000
    max_url_length: int = 4096
    allowed_schemes: tuple[str, ...] = ("https", "http")
    allowed_mimes: frozenset[str] = field(default=SUPPORTED_IMAGE_MIMES)
    #: ``None`` allows any port.
    allowed_ports: frozenset[int] | None = None
    allow_hosts: frozenset[str] = frozenset()
    allow_private_addresses: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.allow_hosts, str):
            raise ConfigError("allow_hosts must be a set of 'host:port' entries, not one string")
        origins = frozenset(normalize_origin(entry) for entry in self.allow_hosts)
        if len(origins) > MAX_ALLOW_HOSTS:
            raise ConfigError(f"allow_hosts holds at most {MAX_ALLOW_HOSTS} origins")
        if self.allowed_ports is not None:
            for origin in sorted(origins):
                if origin_port(origin) not in self.allowed_ports:
                    raise ConfigError(
                        f"allow_hosts entry {origin!r}: its port is not in allowed_ports"
                    )
        object.__setattr__(self, "allow_hosts", origins)  # canonical: what _check_url compares
        if self.max_bytes <= 0 or self.max_pixels <= 0 or self.max_url_length <= 0:
            raise ConfigError("max_bytes, max_pixels and max_url_length must be positive")
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ConfigError("timeouts must be positive")
        if self.max_redirects < 0:
            raise ConfigError("max_redirects must be >= 0")
        unknown_schemes = set(self.allowed_schemes) - set(_DEFAULT_PORTS)
        if unknown_schemes:
            raise ConfigError(f"only http and https can be fetched, not {sorted(unknown_schemes)}")
        unknown_mimes = set(self.allowed_mimes) - SUPPORTED_IMAGE_MIMES
        if unknown_mimes or not self.allowed_mimes:
            raise ConfigError(
                f"allowed_mimes must be a non-empty subset of {SUPPORTED_IMAGE_MIMES}"
            )
        # Our own pixel check runs before decoding; keep it at or below Pillow's guard so the
        # guard is a second line, never the only one.
        guard = Image.MAX_IMAGE_PIXELS or _PILLOW_DEFAULT_MAX_PIXELS
        if self.max_pixels > guard:
            raise ConfigError(f"max_pixels must not exceed Pillow's bomb guard ({guard})")


@dataclass(frozen=True, eq=False)
class FetchedImage:
    """A fetched, verified and decoded input image."""

    image: Image.Image
    """Fully loaded, mode ``RGB``."""
    mime: str
    """What the bytes really are (``image/png``...), whatever the server claimed."""
    size_bytes: int
    sha256: str
    """Hex sha256 of the bytes as downloaded."""
    final_url: str
    """The URL after redirects (with the host name, not the IP we connected to)."""


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    host: str
    addresses: tuple[str, ...]


async def fetch_image(
    url: str,
    *,
    policy: FetchPolicy = FetchPolicy(),  # frozen, so sharing the default is safe
    client: httpx.AsyncClient | None = None,
    resolver: Resolver | None = None,
) -> FetchedImage:
    """Download, check and decode the image at ``url``; raise ``FetchError`` on any refusal.

    ``client`` is the network seam (tests pass ``httpx.AsyncClient(transport=MockTransport)``);
    by default a fresh client is made for this one fetch, ignoring proxy environment variables.
    Only ``client.send`` is used: its default headers, auth and redirect settings are not
    applied. ``resolver`` replaces DNS resolution.
    """
    resolve = resolver or system_resolver
    try:
        async with asyncio.timeout(policy.timeout_s):
            if client is None:
                async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as own:
                    body, final_url = await _download(url, policy, own, resolve)
            else:
                body, final_url = await _download(url, policy, client, resolve)
            image, mime = await asyncio.to_thread(_decode, body, policy)
    except TimeoutError:
        raise FetchError(
            f"input image could not be fetched within {policy.timeout_s:g} seconds"
        ) from None
    return FetchedImage(
        image=image,
        mime=mime,
        size_bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        final_url=final_url,
    )


async def _download(
    url: str, policy: FetchPolicy, client: httpx.AsyncClient, resolve: Resolver
) -> tuple[bytes, str]:
    current = url
    for _hop in range(policy.max_redirects + 1):
        target = await _check_url(current, policy, resolve)
        response = await _open(client, target, policy)
        try:
            if response.status_code in _REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise FetchError(
                        f"input image host {target.host} sent a redirect without Location"
                    )
                try:
                    current = str(target.url.join(location))
                except (httpx.InvalidURL, ValueError, TypeError):
                    raise FetchError(
                        f"input image host {target.host} redirected to an invalid URL"
                    ) from None
                continue
            if not 200 <= response.status_code < 300:
                raise FetchError(
                    f"input image URL answered HTTP {response.status_code} (host {target.host})"
                )
            body = await _read_body(response, target.host, policy)
            return body, str(target.url)
        finally:
            await response.aclose()
    raise FetchError(f"input image URL redirected more than {policy.max_redirects} times")


async def _check_url(url: str, policy: FetchPolicy, resolve: Resolver) -> _Target:
    """Steps 1 and 2: the URL's form, then every address its host resolves to."""
    if not isinstance(url, str) or not url.strip():
        raise FetchError("input image URL is empty")
    if len(url) > policy.max_url_length:
        raise FetchError(f"input image URL is longer than {policy.max_url_length} characters")
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, ValueError, TypeError):
        raise FetchError("input image URL is not a valid URL") from None
    scheme = parsed.scheme.lower()
    if scheme not in policy.allowed_schemes:
        shown = scheme or "(none)"
        allowed = " or ".join(policy.allowed_schemes)
        raise FetchError(f"input image URL scheme {shown!r} is not allowed; use {allowed}")
    if parsed.userinfo:
        raise FetchError("input image URLs with a user name or password are not accepted")
    host = parsed.raw_host.decode("ascii", errors="replace")
    if not host:
        raise FetchError("input image URL has no host")
    port = parsed.port or _DEFAULT_PORTS[scheme]
    if policy.allowed_ports is not None and port not in policy.allowed_ports:
        raise FetchError(f"input image URL port {port} is not allowed")

    literal = parse_ip(host)
    if literal is not None:
        addresses: list[IPv4Address | IPv6Address] = [literal]
    else:
        addresses = await _resolve(resolve, host, port)
    trusted = origin_key(host, port) in policy.allow_hosts
    if trusted:
        logger.debug("input image host %s:%d is in allow_hosts", host, port)
    elif not policy.allow_private_addresses and not all(map(is_public_address, addresses)):
        # Do not echo the resolved address: it may describe our own network.
        logger.info("refused input image host %s: resolves to a non-public address", host)
        raise FetchError(
            f"input image host {host} is not a public internet address; refusing to fetch it"
        )
    return _Target(url=parsed, host=host, addresses=tuple(str(a) for a in addresses))


async def _resolve(resolve: Resolver, host: str, port: int) -> list[IPv4Address | IPv6Address]:
    try:
        answers = await resolve(host.rstrip("."), port)
    except (OSError, UnicodeError):
        raise FetchError(f"input image host {host} could not be resolved") from None
    addresses: list[IPv4Address | IPv6Address] = []
    for answer in answers:
        try:
            address = ip_address(answer)
        except ValueError:
            raise FetchError(f"input image host {host} could not be resolved") from None
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchError(f"input image host {host} could not be resolved")
    return addresses


async def _open(client: httpx.AsyncClient, target: _Target, policy: FetchPolicy) -> httpx.Response:
    """Step 3: connect to a validated address, keeping Host and SNI of the original name."""
    host_header = target.url.netloc.decode("ascii", errors="replace")
    extensions: dict[str, object] = {
        "timeout": httpx.Timeout(policy.timeout_s, connect=policy.connect_timeout_s).as_dict()
    }
    if target.url.scheme == "https" and parse_ip(target.host) is None:
        extensions["sni_hostname"] = target.host.rstrip(".")
    headers = {
        "Host": host_header,
        "Accept": ", ".join(sorted(policy.allowed_mimes)),
        "Accept-Encoding": "identity",
        "User-Agent": "nostr-imagegen",
    }
    for address in target.addresses[:_MAX_CONNECT_ATTEMPTS]:
        try:
            pinned = target.url.copy_with(host=address)
            request = httpx.Request("GET", pinned, headers=headers, extensions=extensions)
            return await client.send(request, stream=True, follow_redirects=False, auth=None)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            logger.debug("could not connect to one address of %s", target.host)
            continue
        except httpx.TimeoutException:
            raise FetchError(f"input image host {target.host} timed out") from None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError):
            raise FetchError(f"input image host {target.host} could not be reached") from None
    raise FetchError(f"could not connect to input image host {target.host}")


async def _read_body(response: httpx.Response, host: str, policy: FetchPolicy) -> bytes:
    """Step 5: refuse by header first, then read at most ``max_bytes``."""
    too_big = FetchError(f"input image is larger than {policy.max_bytes} bytes")
    declared = response.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise FetchError(f"input image host {host} sent an invalid Content-Length") from None
        if length > policy.max_bytes:
            raise too_big
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchError(
            f"input image was sent {encoding}-compressed; only plain bytes are accepted"
        )
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type.startswith(_NOT_IMAGE_PREFIXES) or content_type in (
        "application/json",
        "application/xml",
        "application/xhtml+xml",
        "image/svg+xml",
    ):
        raise FetchError(f"input image URL does not point to an image ({content_type})")
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():  # identity only: no decoding happens
            if len(body) + len(chunk) > policy.max_bytes:
                raise too_big
            body += chunk
    except httpx.TimeoutException:
        raise FetchError(f"input image host {host} timed out") from None
    except httpx.HTTPError:
        raise FetchError(f"input image download from {host} failed") from None
    return bytes(body)


def _decode(data: bytes, policy: FetchPolicy) -> tuple[Image.Image, str]:
    """Step 6 (runs in a worker thread): identify, check pixels from the header, then load."""
    if not data:
        raise FetchError("input image is empty")
    formats = [name for name, mime in _FORMAT_MIMES.items() if mime in policy.allowed_mimes]
    accepted = ", ".join(sorted(policy.allowed_mimes))
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError:
        raise FetchError("input image has too many pixels (decompression bomb guard)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise FetchError(f"input is not a supported image ({accepted})") from None
    try:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise FetchError("input image has no pixels")
        if width * height > policy.max_pixels:
            raise FetchError(
                f"input image is {width}x{height}, more than {policy.max_pixels} pixels"
            )
        mime = _FORMAT_MIMES[image.format or ""]
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        rgb = _to_rgb(image)
        rgb.load()
    except FetchError:
        image.close()
        raise
    except Image.DecompressionBombError:
        image.close()
        raise FetchError("input image has too many pixels (decompression bomb guard)") from None
    except (OSError, ValueError, SyntaxError, EOFError, KeyError, IndexError):
        image.close()
        raise FetchError("input image data is truncated or corrupt") from None
    if rgb is not image:
        image.close()
    return rgb, mime


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (what a diffusion model expects).

    A single-frame RGB image is returned as is (its data is loaded and its file closed); any
    other image becomes a new one, so the caller can close the original.
    """
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image.copy() if getattr(image, "is_animated", False) else image
    return image.convert("RGB")
