"""NIP-96 (HTTP file storage): a multipart ``POST`` with NIP-98 auth.

    host = Nip96Host("https://nostr.build", keys)     # a server root, or its api_url itself
    uploaded = await host.upload(png, mime="image/png", sha256=digest)

A server root is resolved once to its ``api_url`` through
``/.well-known/nostr/nip96.json`` (following one ``delegated_to_url``). The upload is
``multipart/form-data`` (``file``, ``size``, ``content_type``, ``no_transform=true``) with
``Authorization: Nostr <token>``, the token a kind 27235 event (``httpauth.nip98_auth``: ``u``
= the api_url, ``method`` = POST, ``payload`` = the file's sha256). The answer's
``nip94_event`` must name a usable ``url`` and our hash as ``ox`` (or ``x``); a server that
transformed the file anyway is described by what it serves (its ``x``, ``m`` and ``size``).
"""

from __future__ import annotations

import logging

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from nostr_imagegen.errors import UploadError
from nostr_imagegen.nostr.signer import Signer
from nostr_imagegen.service.httpauth import authorization_header, nip98_auth
from nostr_imagegen.service.upload.host import (
    IMAGE_EXTENSIONS,
    UploadedImage,
    check_blob,
    is_sha256_hex,
)
from nostr_imagegen.service.upload.transport import (
    http_errors,
    http_url,
    is_http_url,
    read_bounded,
    reason,
    use_client,
)

__all__ = ["Nip96Host"]

logger = logging.getLogger(__name__)


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
        keys: Signer,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        parsed = http_url(url, "NIP-96 server")
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
        check_blob(data, mime, sha256)
        async with use_client(self._client, self._timeout_s) as client:
            api_url = await self._discover(client)
            token = nip98_auth(self._keys, url=api_url, method="POST", payload_sha256=sha256)
            extension = IMAGE_EXTENSIONS.get(mime, "bin")
            files = {"file": (f"{sha256}.{extension}", data, mime)}
            form = {"size": str(len(data)), "content_type": mime, "no_transform": "true"}
            headers = {"Authorization": authorization_header(token, urlsafe_unpadded=False)}
            async with (
                http_errors(self._timeout_s),
                client.stream("POST", api_url, files=files, data=form, headers=headers) as response,
            ):
                if response.status_code not in (200, 201, 202):
                    raise UploadError(reason(response))
                body = await read_bounded(response)
        return self._parse_reply(body, data, mime, sha256)

    async def _discover(self, client: httpx.AsyncClient) -> str:
        if self._api_url is not None:
            return self._api_url
        assert self._root is not None
        root = self._root
        for _hop in range(2):  # the server itself, then at most one delegation
            info = await self._read_info(client, root)
            if info.api_url:
                if not is_http_url(info.api_url):
                    raise UploadError("nip96.json api_url is not an http(s) URL")
                self._api_url = info.api_url
                return info.api_url
            if not info.delegated_to_url or not is_http_url(info.delegated_to_url):
                break
            root = info.delegated_to_url.rstrip("/")
        raise UploadError("nip96.json names no api_url")

    async def _read_info(self, client: httpx.AsyncClient, root: str) -> _Nip96Info:
        url = root + "/.well-known/nostr/nip96.json"
        async with http_errors(self._timeout_s), client.stream("GET", url) as response:
            if response.status_code != 200:
                raise UploadError(f"nip96.json: {reason(response)}")
            body = await read_bounded(response)
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
        if not is_http_url(url):
            raise UploadError("NIP-96 response has no usable url tag")
        original = (tags.get("ox") or tags.get("x") or "").lower()
        if not original:
            raise UploadError("NIP-96 response has neither ox nor x hash")
        if original != sha256:
            raise UploadError("server stored a file with a different sha256")
        served = (tags.get("x") or original).lower()
        if not is_sha256_hex(served):
            raise UploadError("NIP-96 response has a malformed x hash")
        size: int | None = len(data)
        if served != sha256:
            # The server transformed the file despite no_transform; describe what it serves.
            logger.info("%s transformed %s into %s", self.name, sha256, served)
            size_tag = tags.get("size", "")
            size = int(size_tag) if size_tag.isdigit() else None
        served_mime = tags.get("m", mime) if served != sha256 else mime
        return UploadedImage(url=url, sha256=served, size=size, mime=served_mime, host=self.name)
