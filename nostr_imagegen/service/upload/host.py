"""What every image host is: the ``ImageHost`` protocol, its ``UploadedImage``, the fallback.

    >>> uploaded = await upload_with_fallback(hosts, png, mime="image/png", sha256=digest)
    >>> uploaded.url, uploaded.host
    ('https://blossom.example/9f86d0....png', 'blossom blossom.example')

``check_blob`` is the one check every host runs before sending or writing anything: the bytes
are not empty, ``sha256`` is 64 lowercase hex and really their hash, the MIME type is
well-formed. A host that fails raises ``UploadError``; ``upload_with_fallback`` then tries
the next one.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from nostr_imagegen.errors import UploadError
from nostr_imagegen.nostr.hexkeys import is_hex64

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageHost",
    "UploadedImage",
    "check_blob",
    "is_sha256_hex",
    "upload_with_fallback",
]

logger = logging.getLogger(__name__)

#: MIME type -> file extension for the images we publish.
IMAGE_EXTENSIONS: Final[dict[str, str]] = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
}

_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")


@dataclass(frozen=True)
class UploadedImage:
    """Where a result image now lives."""

    url: str
    sha256: str
    """Hex sha256 of the bytes served at ``url`` (for the NIP-92 ``imeta`` ``x`` field)."""
    size: int | None
    """Bytes served at ``url``; ``None`` only when a NIP-96 host transformed the file
    without saying its new size."""
    mime: str
    host: str
    """The ``name`` of the host that accepted it."""
    mirrors: tuple[str, ...] = ()
    """Further URLs of the same bytes (Blossom servers after the first)."""


@runtime_checkable
class ImageHost(Protocol):
    """Somewhere to publish a result image. ``upload`` raises ``UploadError`` on failure."""

    name: str

    async def upload(self, data: bytes, *, mime: str, sha256: str) -> UploadedImage: ...


async def upload_with_fallback(
    hosts: Sequence[ImageHost], data: bytes, *, mime: str, sha256: str
) -> UploadedImage:
    """Try each host in order; the first success wins. ``UploadError`` lists every failure."""
    if not hosts:
        raise UploadError("no image host is configured")
    failures: list[str] = []
    for host in hosts:
        try:
            return await host.upload(data, mime=mime, sha256=sha256)
        except UploadError as exc:
            logger.warning("upload to %s failed: %s", host.name, exc)
            failures.append(f"{host.name}: {exc}")
        except Exception as exc:
            # A faulty host implementation must not stop the fallback to the next host.
            logger.exception("upload to %s failed unexpectedly", host.name)
            failures.append(f"{host.name}: unexpected {type(exc).__name__}")
    raise UploadError("no image host accepted the image (" + "; ".join(failures) + ")")


def is_sha256_hex(text: str) -> bool:
    """Whether ``text`` is a sha256 digest as hosts and ``imeta`` write it: 64 lowercase hex."""
    return is_hex64(text)


def check_blob(data: bytes, mime: str, sha256: str) -> None:
    """Refuse (``UploadError``) an upload whose bytes, hash or MIME type is not what it says."""
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) == 0:
        raise UploadError("nothing to upload: the image is empty")
    if not is_sha256_hex(sha256):
        raise UploadError("sha256 must be 64 lowercase hex characters")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise UploadError("sha256 does not match the image bytes")
    if not isinstance(mime, str) or not _MIME.fullmatch(mime):
        raise UploadError(f"invalid MIME type {mime!r}")
