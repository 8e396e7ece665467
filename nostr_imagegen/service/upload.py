"""Hosting result images: one ``ImageHost`` interface, three implementations, one fallback.

    >>> hosts = [BlossomHost(["https://blossom.example"], keys),
    ...          Nip96Host("https://nostr.build", keys),
    ...          LocalFolderHost(Path("/srv/images"), "https://images.example.org")]
    >>> uploaded = await upload_with_fallback(hosts, png, mime="image/png", sha256=digest)
    >>> uploaded.url
    'https://blossom.example/9f86d0....png'

- ``BlossomHost``: BUD-02 ``PUT /upload`` with the raw bytes and a BUD-11 kind 24242 token
  (see ``httpauth``). The returned blob descriptor must carry our sha256. With several
  servers the first that accepts wins; the ones after it get a copy (a plain re-upload: BUD-04
  ``/mirror`` is not among the texts we follow) whose failure is only logged.
- ``Nip96Host``: NIP-96 multipart ``POST`` with NIP-98 auth (kind 27235); a server root is
  resolved to its ``api_url`` through ``/.well-known/nostr/nip96.json``.
- ``LocalFolderHost``: writes ``<sha256>.<ext>`` atomically into a folder that some web server
  publishes under ``base_url``; ``serve_folder`` (from ``folderserver``, re-exported here) is
  such a server for demos on 127.0.0.1.

Every failure is an ``UploadError`` whose message names the host (never keys or tokens).
Responses are read with a size bound; every request has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from nostr_imagegen.errors import ConfigError, UploadError
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.folderserver import FolderServer, serve_folder
from nostr_imagegen.service.httpauth import authorization_header, blossom_upload_auth, nip98_auth

__all__ = [
    "IMAGE_EXTENSIONS",
    "BlossomHost",
    "FolderServer",
    "ImageHost",
    "LocalFolderHost",
    "Nip96Host",
    "UploadedImage",
    "serve_folder",
    "upload_with_fallback",
]

logger = logging.getLogger(__name__)

#: MIME type -> file extension for the images we publish.
IMAGE_EXTENSIONS: dict[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
}

#: Upper bound on a JSON answer from an image host (descriptors and NIP-96 replies are small).
MAX_RESPONSE_BYTES = 256 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_MAX_URL = 4096


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


# --- shared helpers --------------------------------------------------------------------


def _check_blob(data: bytes, mime: str, sha256: str) -> None:
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) == 0:
        raise UploadError("nothing to upload: the image is empty")
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise UploadError("sha256 must be 64 lowercase hex characters")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise UploadError("sha256 does not match the image bytes")
    if not isinstance(mime, str) or not _MIME.fullmatch(mime):
        raise UploadError(f"invalid MIME type {mime!r}")


def _http_url(value: str, what: str) -> httpx.URL:
    """An absolute http(s) URL without user info, or ``ConfigError``."""
    try:
        url = httpx.URL(value.strip())
    except (httpx.InvalidURL, TypeError, ValueError, AttributeError):
        raise ConfigError(f"{what} {value!r} is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host or url.userinfo:
        raise ConfigError(f"{what} {value!r} must be an http(s) URL without user info")
    return url


def _is_http_url(value: str) -> bool:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    return url.scheme in ("http", "https") and bool(url.host) and len(value) <= _MAX_URL


def _reason(response: httpx.Response) -> str:
    """``HTTP 413 (X-Reason: ...)``, the reason cut short and stripped of control characters."""
    text = f"HTTP {response.status_code}"
    reason = response.headers.get("x-reason", "")
    if reason:
        printable = "".join(ch for ch in reason if ch.isprintable())[:200]
        text += f" ({printable})"
    return text


async def _read_bounded(response: httpx.Response, limit: int = MAX_RESPONSE_BYTES) -> bytes:
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
async def _use_client(
    client: httpx.AsyncClient | None, timeout_s: float
) -> AsyncIterator[httpx.AsyncClient]:
    if client is not None:
        yield client
        return
    async with httpx.AsyncClient(timeout=timeout_s) as own:
        yield own


@contextlib.asynccontextmanager
async def _http_errors(timeout_s: float) -> AsyncIterator[None]:
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


# --- Blossom ---------------------------------------------------------------------------

Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]


class BlobDescriptor(BaseModel):
    """BUD-02 answer to ``PUT /upload``::

    {"url": "https://cdn.example.com/<sha256>.png", "sha256": "<sha256>", "size": 184292,
     "type": "image/png", "uploaded": 1725105921}
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    url: Annotated[str, StringConstraints(max_length=_MAX_URL)]
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
        keys: Keys,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 60.0,
        mirror: bool = True,
        auth_ttl_s: int = 300,
    ) -> None:
        if isinstance(servers, str) or not servers:
            raise ConfigError("BlossomHost needs a list of one or more server URLs")
        urls = [_http_url(server, "Blossom server") for server in servers]
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
        _check_blob(data, mime, sha256)
        failures: list[str] = []
        async with _use_client(self._client, self._timeout_s) as client:
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
        async with _http_errors(self._timeout_s):
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
                        raise UploadError(_reason(response))
                    body = await _read_bounded(response)
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
    if not _is_http_url(descriptor.url):
        raise UploadError("blob descriptor has no usable http(s) url")
    return descriptor


# --- NIP-96 ----------------------------------------------------------------------------


class _Nip96Info(BaseModel):
    """``/.well-known/nostr/nip96.json`` (only what we use)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    api_url: str = ""
    delegated_to_url: str | None = None


class _Nip94Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    tags: tuple[tuple[str, ...], ...] = ()
    content: str = ""


class _Nip96Reply(BaseModel):
    """NIP-96 upload answer::

    {"status": "success", "message": "Upload successful.",
     "nip94_event": {"tags": [["url", "https://.../<sha256>.png"], ["ox", "<sha256>"],
                              ["x", "<sha256>"], ["m", "image/png"], ["dim", "800x600"]],
                     "content": ""}}
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    status: str
    message: str = ""
    processing_url: str | None = None
    nip94_event: _Nip94Event | None = None


class Nip96Host:
    """Upload to a NIP-96 server (multipart ``POST``, NIP-98 auth).

    ``url`` is either the upload ``api_url`` itself or a server root
    (``https://nostr.build``), whose ``api_url`` is read once from
    ``/.well-known/nostr/nip96.json`` (following one ``delegated_to_url``).
    """

    def __init__(
        self,
        url: str,
        keys: Keys,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        parsed = _http_url(url, "NIP-96 server")
        is_root = parsed.path in ("", "/") and not parsed.query
        self._root = str(parsed).rstrip("/") if is_root else None
        self._api_url: str | None = None if is_root else str(parsed)
        self._keys = keys
        self._client = client
        self._timeout_s = timeout_s
        self.name = f"nip96 {parsed.host}"

    def __repr__(self) -> str:
        return f"Nip96Host(api_url={self._api_url or self._root!r})"

    async def upload(self, data: bytes, *, mime: str, sha256: str) -> UploadedImage:
        """``POST`` the file as ``multipart/form-data`` to the ``api_url``."""
        _check_blob(data, mime, sha256)
        async with _use_client(self._client, self._timeout_s) as client:
            api_url = await self._discover(client)
            token = nip98_auth(self._keys, url=api_url, method="POST", payload_sha256=sha256)
            extension = IMAGE_EXTENSIONS.get(mime, "bin")
            files = {"file": (f"{sha256}.{extension}", data, mime)}
            form = {"size": str(len(data)), "content_type": mime, "no_transform": "true"}
            headers = {"Authorization": authorization_header(token, urlsafe_unpadded=False)}
            async with (
                _http_errors(self._timeout_s),
                client.stream("POST", api_url, files=files, data=form, headers=headers) as response,
            ):
                if response.status_code not in (200, 201, 202):
                    raise UploadError(_reason(response))
                body = await _read_bounded(response)
        return self._parse_reply(body, data, mime, sha256)

    async def _discover(self, client: httpx.AsyncClient) -> str:
        if self._api_url is not None:
            return self._api_url
        assert self._root is not None
        root = self._root
        for _hop in range(2):  # the server itself, then at most one delegation
            info = await self._read_info(client, root)
            if info.api_url:
                if not _is_http_url(info.api_url):
                    raise UploadError("nip96.json api_url is not an http(s) URL")
                self._api_url = info.api_url
                return info.api_url
            if not info.delegated_to_url or not _is_http_url(info.delegated_to_url):
                break
            root = info.delegated_to_url.rstrip("/")
        raise UploadError("nip96.json names no api_url")

    async def _read_info(self, client: httpx.AsyncClient, root: str) -> _Nip96Info:
        url = root + "/.well-known/nostr/nip96.json"
        async with _http_errors(self._timeout_s), client.stream("GET", url) as response:
            if response.status_code != 200:
                raise UploadError(f"nip96.json: {_reason(response)}")
            body = await _read_bounded(response)
        try:
            return _Nip96Info.model_validate_json(body)
        except ValidationError:
            raise UploadError("nip96.json is not valid") from None

    def _parse_reply(self, body: bytes, data: bytes, mime: str, sha256: str) -> UploadedImage:
        try:
            reply = _Nip96Reply.model_validate_json(body)
        except ValidationError:
            raise UploadError("answer is not a NIP-96 upload response") from None
        if reply.status not in ("success", "processing") or reply.nip94_event is None:
            message = "".join(ch for ch in reply.message if ch.isprintable())[:200]
            raise UploadError(f"server said {reply.status!r}: {message}")
        tags: dict[str, str] = {}
        for tag in reply.nip94_event.tags:
            if len(tag) >= 2 and tag[0] not in tags:
                tags[tag[0]] = tag[1]
        url = tags.get("url", "")
        if not _is_http_url(url):
            raise UploadError("NIP-96 response has no usable url tag")
        original = (tags.get("ox") or tags.get("x") or "").lower()
        if not original:
            raise UploadError("NIP-96 response has neither ox nor x hash")
        if original != sha256:
            raise UploadError("server stored a file with a different sha256")
        served = (tags.get("x") or original).lower()
        if not _HEX64.fullmatch(served):
            raise UploadError("NIP-96 response has a malformed x hash")
        size: int | None = len(data)
        if served != sha256:
            # The server transformed the file despite no_transform; describe what it serves.
            logger.info("%s transformed %s into %s", self.name, sha256, served)
            size_tag = tags.get("size", "")
            size = int(size_tag) if size_tag.isdigit() else None
        served_mime = tags.get("m", mime) if served != sha256 else mime
        return UploadedImage(url=url, sha256=served, size=size, mime=served_mime, host=self.name)


# --- local folder ----------------------------------------------------------------------


class LocalFolderHost:
    """Write ``<sha256>.<ext>`` into ``folder``, published by some web server at ``base_url``.

    The file name is built only from the verified sha256 and the MIME type's extension, so
    nothing a customer sends can name a file. Writes are atomic (temporary file in the same
    folder, fsync, ``os.replace``): a reader sees the whole image or nothing.
    """

    def __init__(self, folder: Path | str, base_url: str) -> None:
        self.folder = Path(folder)
        self.base_url = str(_http_url(base_url, "base_url")).rstrip("/")
        self.name = "local folder"

    def __repr__(self) -> str:
        return f"LocalFolderHost(folder={str(self.folder)!r}, base_url={self.base_url!r})"

    async def upload(self, data: bytes, *, mime: str, sha256: str) -> UploadedImage:
        """Store the image and return its URL under ``base_url``."""
        _check_blob(data, mime, sha256)
        extension = IMAGE_EXTENSIONS.get(mime)
        if extension is None:
            raise UploadError(f"cannot store {mime} (only {', '.join(IMAGE_EXTENSIONS)})")
        filename = f"{sha256}.{extension}"
        try:
            await asyncio.to_thread(self._write, filename, bytes(data))
        except OSError as exc:
            logger.error("could not write %s into %s: %s", filename, self.folder, exc)
            raise UploadError("could not write the image to the local folder") from None
        return UploadedImage(
            url=f"{self.base_url}/{filename}",
            sha256=sha256,
            size=len(data),
            mime=mime,
            host=self.name,
        )

    def _write(self, filename: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o644)  # mkstemp makes 0600; the web server must read it
            os.replace(temporary, self.folder / filename)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
