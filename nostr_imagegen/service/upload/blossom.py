"""Blossom (BUD-02 upload, BUD-11 auth): ``PUT /upload`` with the raw bytes.

    host = BlossomHost(["https://blossom.example", "https://cdn.example"], keys)
    uploaded = await host.upload(png, mime="image/png", sha256=digest)

The request carries the bytes, ``Content-Type``, ``X-SHA-256`` and ``Authorization: Nostr
<token>``, the token a signed kind 24242 event (``httpauth.blossom_upload_auth``: ``t`` =
upload, ``x`` = the hash, ``server`` = the domain, an ``expiration``). It is sent base64url
without padding first (current BUD-11) and padded base64 once more after a 401. The answer is
a blob descriptor that must carry our sha256 (and our size when it gives one).

With several servers the first that accepts wins; the ones after it get a copy (a plain
re-upload: BUD-04 ``/mirror`` is not among the texts we follow) whose failure is only logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Annotated

import httpx
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from nostr_imagegen.errors import ConfigError, UploadError
from nostr_imagegen.nostr.signer import Signer
from nostr_imagegen.service.httpauth import authorization_header, blossom_upload_auth
from nostr_imagegen.service.upload.host import UploadedImage, check_blob
from nostr_imagegen.service.upload.transport import (
    MAX_URL_CHARS,
    http_errors,
    http_url,
    is_http_url,
    read_bounded,
    reason,
    use_client,
)

__all__ = ["BlobDescriptor", "BlossomHost"]

logger = logging.getLogger(__name__)

Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]


class BlobDescriptor(BaseModel):
    """BUD-02 answer to ``PUT /upload``::

    {"url": "https://cdn.example.com/<sha256>.png", "sha256": "<sha256>", "size": 184292,
     "type": "image/png", "uploaded": 1725105921}
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    url: Annotated[str, StringConstraints(max_length=MAX_URL_CHARS)]
    sha256: Hex64
    size: Annotated[int, Field(ge=0)] | None = None
    type: str | None = None
    uploaded: int | None = None


class BlossomHost:
    """Upload to one or more Blossom servers (BUD-02 ``PUT /upload``, BUD-11 auth).

    ``servers`` are base URLs (``https://blossom.example``); the endpoints hang off their
    root. The first server that accepts the blob wins; with ``mirror=True`` the servers after
    it receive the same blob (concurrently, before ``upload`` returns), their URLs reported
    in ``UploadedImage.mirrors``; a failed copy is only logged.
    """

    def __init__(
        self,
        servers: Sequence[str],
        keys: Signer,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 60.0,
        mirror: bool = True,
        auth_ttl_s: int = 300,
    ) -> None:
        if isinstance(servers, str) or not servers:
            raise ConfigError("BlossomHost needs a list of one or more server URLs")
        urls = [http_url(server, "Blossom server") for server in servers]
        self._servers = tuple(str(url).rstrip("/") for url in urls)
        self._domains = tuple(url.host for url in urls)
        self._keys = keys
        self._client = client
        self._timeout_s = timeout_s
        self._mirror = mirror
        self._auth_ttl_s = auth_ttl_s
        self.name = "blossom " + ",".join(self._domains)

    def __repr__(self) -> str:
        return f"BlossomHost(servers={list(self._servers)!r})"

    async def upload(self, data: bytes, *, mime: str, sha256: str) -> UploadedImage:
        """``PUT /upload`` on each server in turn until one accepts; mirror to the rest."""
        check_blob(data, mime, sha256)
        failures: list[str] = []
        async with use_client(self._client, self._timeout_s) as client:
            for index, server in enumerate(self._servers):
                try:
                    descriptor = await self._put(client, index, data, mime, sha256)
                except UploadError as exc:
                    logger.warning("Blossom upload to %s failed: %s", self._domains[index], exc)
                    several = len(self._servers) > 1
                    failures.append(f"{self._domains[index]}: {exc}" if several else str(exc))
                    continue
                logger.info("uploaded %s to %s", sha256, server)
                mirrors: tuple[str, ...] = ()
                if self._mirror:
                    mirrors = await self._copy_to(
                        client, range(index + 1, len(self._servers)), data, mime, sha256
                    )
                return UploadedImage(
                    url=descriptor.url,
                    sha256=sha256,
                    size=len(data),
                    mime=mime,
                    host=self.name,
                    mirrors=mirrors,
                )
        raise UploadError("; ".join(failures))

    async def _copy_to(
        self,
        client: httpx.AsyncClient,
        indices: range,
        data: bytes,
        mime: str,
        sha256: str,
    ) -> tuple[str, ...]:
        async def one(index: int) -> str | None:
            try:
                return (await self._put(client, index, data, mime, sha256)).url
            except UploadError as exc:
                logger.warning("Blossom mirror to %s failed: %s", self._domains[index], exc)
                return None

        urls = await asyncio.gather(*(one(index) for index in indices))
        return tuple(url for url in urls if url is not None)

    async def _put(
        self, client: httpx.AsyncClient, index: int, data: bytes, mime: str, sha256: str
    ) -> BlobDescriptor:
        url = self._servers[index] + "/upload"
        token = blossom_upload_auth(
            self._keys, sha256=sha256, server_domain=self._domains[index], ttl_s=self._auth_ttl_s
        )
        body = b""
        async with http_errors(self._timeout_s):
            # base64url without padding first (current BUD-11); padded base64 once on 401.
            for urlsafe in (True, False):
                headers = {
                    "Authorization": authorization_header(token, urlsafe_unpadded=urlsafe),
                    "Content-Type": mime,
                    "X-SHA-256": sha256,
                }
                async with client.stream("PUT", url, content=data, headers=headers) as response:
                    if response.status_code == 401 and urlsafe:
                        logger.debug("%s refused base64url auth; retrying padded", url)
                        continue
                    if response.status_code not in (200, 201):
                        raise UploadError(reason(response))
                    body = await read_bounded(response)
                    break
        return _parse_descriptor(body, sha256, len(data))


def _parse_descriptor(body: bytes, sha256: str, size: int) -> BlobDescriptor:
    try:
        descriptor = BlobDescriptor.model_validate_json(body)
    except ValidationError:
        raise UploadError("answer is not a blob descriptor") from None
    if descriptor.sha256.lower() != sha256:
        raise UploadError("server stored a blob with a different sha256")
    if descriptor.size is not None and descriptor.size != size:
        raise UploadError(f"server stored {descriptor.size} bytes, not {size}")
    if not is_http_url(descriptor.url):
        raise UploadError("blob descriptor has no usable http(s) url")
    return descriptor
