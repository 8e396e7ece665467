"""Image hosts: Blossom, NIP-96, local folder, the fallback chain and the folder server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image

from nostr_imagegen.errors import ConfigError, UploadError
from nostr_imagegen.nostr.event import Event, parse_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.upload import (
    BlossomHost,
    ImageHost,
    LocalFolderHost,
    Nip96Host,
    UploadedImage,
    serve_folder,
    upload_with_fallback,
)


def make_png() -> tuple[bytes, str]:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (1, 2, 3)).save(buffer, format="PNG")
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def keys() -> Keys:
    return Keys.generate()


@pytest.fixture
def png() -> tuple[bytes, str]:
    return make_png()


def decode_auth(header: str, *, urlsafe: bool) -> Event:
    """The signed event inside ``Authorization: Nostr <base64>``, verified."""
    scheme, _, token = header.partition(" ")
    assert scheme == "Nostr"
    if urlsafe:
        assert not set(token) & set("=+/")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    else:
        raw = base64.b64decode(token, validate=True)
    return parse_event(raw)


def tag(event: Event, name: str) -> str | None:
    return event.tag_value(name)


def descriptor(url: str, sha256: str, size: int) -> dict[str, object]:
    return {"url": url, "sha256": sha256, "size": size, "type": "image/png", "uploaded": 1}


class BlossomMock:
    """Blossom servers keyed by host: each answers according to its mode."""

    def __init__(self, modes: dict[str, str], keys: Keys) -> None:
        self.modes = modes
        self.keys = keys
        self.calls: list[str] = []
        self.auth_headers: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls.append(host)
        body = await request.aread()
        sha = hashlib.sha256(body).hexdigest()
        mode = self.modes[host]
        if mode == "fail":
            return httpx.Response(503, headers={"X-Reason": "disk full\r\nX-Evil: 1"})
        if mode == "wrong-sha":
            return httpx.Response(
                201, json=descriptor(f"https://{host}/x.png", "0" * 64, len(body))
            )
        self.auth_headers.append(request.headers["authorization"])
        if mode == "401-first" and len(self.auth_headers) == 1:
            return httpx.Response(401)
        return httpx.Response(201, json=descriptor(f"https://{host}/{sha}.png", sha, len(body)))

    def host(self, *servers: str, mirror: bool = True) -> tuple[BlossomHost, httpx.AsyncClient]:
        client = httpx.AsyncClient(transport=httpx.MockTransport(self))
        return BlossomHost(
            [f"https://{s}" for s in servers], self.keys, client=client, mirror=mirror
        ), client


# --- Blossom ---------------------------------------------------------------------------


async def test_blossom_put_upload_with_signed_bud11_token(
    keys: Keys, png: tuple[bytes, str]
) -> None:
    data, sha = png
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = await request.aread()
        return httpx.Response(
            201,
            json=descriptor(
                f"https://cdn.example/{sha}.png", hashlib.sha256(body).hexdigest(), len(body)
            ),
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        host = BlossomHost(["https://CDN.example/"], keys, client=client)
        uploaded = await host.upload(data, mime="image/png", sha256=sha)

    assert uploaded == UploadedImage(
        url=f"https://cdn.example/{sha}.png",
        sha256=sha,
        size=len(data),
        mime="image/png",
        host=host.name,
    )
    (request,) = seen
    assert request.method == "PUT"
    assert str(request.url) == "https://cdn.example/upload"
    assert request.content == data
    assert request.headers["content-type"] == "image/png"
    assert request.headers["x-sha-256"] == sha
    event = decode_auth(request.headers["authorization"], urlsafe=True)
    assert event.kind == 24242
    assert event.pubkey == keys.public_key
    assert tag(event, "t") == "upload"
    assert tag(event, "x") == sha
    assert tag(event, "server") == "cdn.example"
    assert event.created_at <= time.time()
    expiration = tag(event, "expiration")
    assert expiration is not None
    assert int(expiration) > time.time()
    assert event.content


async def test_blossom_retries_once_with_padded_base64_on_401(
    keys: Keys, png: tuple[bytes, str]
) -> None:
    data, sha = png
    mock = BlossomMock({"old.example": "401-first"}, keys)
    host, client = mock.host("old.example")
    async with client:
        uploaded = await host.upload(data, mime="image/png", sha256=sha)
    assert uploaded.url == f"https://old.example/{sha}.png"
    assert mock.calls == ["old.example", "old.example"]
    first, second = mock.auth_headers
    token = second.removeprefix("Nostr ")
    # The retry carries the same event as standard, padded base64.
    assert len(token) % 4 == 0
    assert base64.b64encode(base64.b64decode(token, validate=True)).decode() == token
    assert decode_auth(first, urlsafe=True) == decode_auth(second, urlsafe=False)


async def test_blossom_401_twice_is_a_failure(keys: Keys, png: tuple[bytes, str]) -> None:
    data, sha = png
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(401, headers={"X-Reason": "unknown pubkey"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        host = BlossomHost(["https://strict.example"], keys, client=client)
        with pytest.raises(UploadError, match=r"HTTP 401 \(unknown pubkey\)"):
            await host.upload(data, mime="image/png", sha256=sha)
    assert len(calls) == 2


async def test_blossom_descriptor_with_another_sha256_is_refused(
    keys: Keys, png: tuple[bytes, str]
) -> None:
    data, sha = png
    host, client = BlossomMock({"liar.example": "wrong-sha"}, keys).host("liar.example")
    async with client:
        with pytest.raises(UploadError, match="different sha256"):
            await host.upload(data, mime="image/png", sha256=sha)


@pytest.mark.parametrize(
    "answer",
    [
        b"<html>not json</html>",
        b'{"sha256": "abc"}',
        b'{"url": "javascript:alert(1)", "sha256": "%s"}',
    ],
)
async def test_blossom_malformed_descriptor_is_refused(
    keys: Keys, png: tuple[bytes, str], answer: bytes
) -> None:
    data, sha = png
    body = answer.replace(b"%s", sha.encode())
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(UploadError):
            await BlossomHost(["https://x.example"], keys, client=client).upload(
                data, mime="image/png", sha256=sha
            )


async def test_blossom_oversized_answer_is_refused(keys: Keys, png: tuple[bytes, str]) -> None:
    data, sha = png
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b" " * 400_000))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(UploadError, match="larger than"):
            await BlossomHost(["https://x.example"], keys, client=client).upload(
                data, mime="image/png", sha256=sha
            )


async def test_blossom_first_success_wins_and_later_servers_get_a_copy(
    keys: Keys, png: tuple[bytes, str]
) -> None:
    data, sha = png
    mock = BlossomMock(
        {"a.example": "fail", "b.example": "ok", "c.example": "ok", "d.example": "fail"}, keys
    )
    host, client = mock.host("a.example", "b.example", "c.example", "d.example")
    async with client:
        uploaded = await host.upload(data, mime="image/png", sha256=sha)
    assert uploaded.url == f"https://b.example/{sha}.png"
    # c accepted the copy; d's failure is only logged.
    assert uploaded.mirrors == (f"https://c.example/{sha}.png",)
    assert sorted(mock.calls) == ["a.example", "b.example", "c.example", "d.example"]


async def test_blossom_without_mirroring_stops_at_first_success(
    keys: Keys, png: tuple[bytes, str]
) -> None:
    data, sha = png
    mock = BlossomMock({"a.example": "ok", "b.example": "ok"}, keys)
    host, client = mock.host("a.example", "b.example", mirror=False)
    async with client:
        uploaded = await host.upload(data, mime="image/png", sha256=sha)
    assert uploaded.mirrors == ()
    assert mock.calls == ["a.example"]


async def test_blossom_all_servers_failing_raises_with_each_reason(
    keys: Keys, png: tuple[bytes, str]
) -> None:
    data, sha = png
    host, client = BlossomMock({"a.example": "fail", "b.example": "wrong-sha"}, keys).host(
        "a.example", "b.example"
    )
    async with client:
        with pytest.raises(UploadError) as caught:
            await host.upload(data, mime="image/png", sha256=sha)
    message = str(caught.value)
    assert "a.example: HTTP 503 (disk fullX-Evil: 1)" in message
    assert "b.example: server stored a blob with a different sha256" in message
    assert not set(message) & {"\r", "\n"}


async def test_blossom_network_error_becomes_upload_error(
    keys: Keys, png: tuple[bytes, str]
) -> None:
    data, sha = png

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(UploadError, match="ConnectError"):
            await BlossomHost(["https://down.example"], keys, client=client).upload(
                data, mime="image/png", sha256=sha
            )


async def test_blossom_slow_server_hits_the_deadline(keys: Keys, png: tuple[bytes, str]) -> None:
    data, sha = png

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(500)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        host = BlossomHost(["https://slow.example"], keys, client=client, timeout_s=0.2)
        with pytest.raises(UploadError, match="no answer within"):
            await host.upload(data, mime="image/png", sha256=sha)


@pytest.mark.parametrize(
    "servers", [[], "https://one.example", ["ftp://x.example"], ["https://u:p@x.example"]]
)
def test_blossom_rejects_bad_server_lists(keys: Keys, servers: object) -> None:
    with pytest.raises(ConfigError):
        BlossomHost(servers, keys)  # type: ignore[arg-type]


def test_hosts_do_not_show_keys_in_repr(keys: Keys) -> None:
    host = BlossomHost(["https://a.example"], keys)
    nip96 = Nip96Host("https://b.example", keys)
    for text in (repr(host), repr(nip96), host.name, nip96.name):
        assert keys.secret_hex() not in text


# --- a real Blossom server on 127.0.0.1 ------------------------------------------------


class _BlossomServer(BaseHTTPRequestHandler):
    """Just enough of BUD-01/02/11: checks the token, stores blobs, serves them back."""

    blobs: dict[str, bytes] = {}  # noqa: RUF012 - test-only class state
    pubkeys: list[str] = []  # noqa: RUF012

    def do_PUT(self) -> None:
        if self.path != "/upload":
            self._send(404, b"")
            return
        body = self.rfile.read(int(self.headers["Content-Length"]))
        sha = hashlib.sha256(body).hexdigest()
        try:
            event = decode_auth(self.headers["Authorization"], urlsafe=True)
        except Exception:
            self._send(401, b"")
            return
        expiration = event.tag_value("expiration") or "0"
        valid = (
            event.kind == 24242
            and event.tag_value("t") == "upload"
            and sha in [t[1] for t in event.tags_named("x")]
            and event.created_at < time.time() < int(expiration)
            and self.headers["X-SHA-256"] == sha
        )
        if not valid:
            self._send(401, b"")
            return
        type(self).blobs[sha] = body
        type(self).pubkeys.append(event.pubkey)
        port = int(self.server.server_address[1])  # type: ignore[index]
        answer = descriptor(f"http://127.0.0.1:{port}/{sha}.png", sha, len(body))
        self._send(201, json.dumps(answer).encode(), "application/json")

    def do_GET(self) -> None:
        blob = type(self).blobs.get(self.path.strip("/").split(".")[0])
        self._send(200 if blob else 404, blob or b"", "image/png")

    def _send(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def blossom_server() -> Iterator[str]:
    _BlossomServer.blobs.clear()
    _BlossomServer.pubkeys.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BlossomServer)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.integration
async def test_blossom_round_trip_against_a_real_server(
    keys: Keys, png: tuple[bytes, str], blossom_server: str
) -> None:
    data, sha = png
    uploaded = await BlossomHost([blossom_server], keys).upload(data, mime="image/png", sha256=sha)
    assert _BlossomServer.pubkeys == [keys.public_key]
    async with httpx.AsyncClient() as client:
        served = await client.get(uploaded.url)
    assert hashlib.sha256(served.content).hexdigest() == sha


# --- NIP-96 ----------------------------------------------------------------------------

API_URL = "https://files.example/api/v2/nip96/upload"


def nip96_reply(
    sha: str, *, ox: str | None = None, x: str | None = None, extra: list[list[str]] | None = None
) -> dict[str, object]:
    tags = [
        ["url", f"https://media.files.example/{sha}.png"],
        ["ox", ox or sha],
        ["x", x or sha],
        ["m", "image/png"],
    ]
    return {
        "status": "success",
        "message": "Upload successful.",
        "nip94_event": {"tags": tags + (extra or []), "content": ""},
    }


class Nip96Mock:
    def __init__(
        self, reply: Callable[[str], dict[str, object]], well_known: dict[str, dict[str, object]]
    ) -> None:
        self.reply = reply
        self.well_known = well_known
        self.uploads: list[tuple[httpx.Request, bytes]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/.well-known/nostr/nip96.json":
            info = self.well_known.get(request.url.host)
            return httpx.Response(200, json=info) if info is not None else httpx.Response(404)
        if request.method == "POST" and str(request.url) == API_URL:
            body = await request.aread()
            self.uploads.append((request, body))
            event = decode_auth(request.headers["authorization"], urlsafe=False)
            return httpx.Response(201, json=self.reply(event.tag_value("payload") or ""))
        return httpx.Response(404)


async def test_nip96_discovers_api_url_and_uploads_multipart_with_nip98(
    keys: Keys, png: tuple[bytes, str]
) -> None:
    data, sha = png
    mock = Nip96Mock(
        nip96_reply,
        {"files.example": {"api_url": API_URL, "download_url": "https://media.files.example"}},
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(mock)) as client:
        host = Nip96Host("https://files.example", keys, client=client)
        uploaded = await host.upload(data, mime="image/png", sha256=sha)
        await host.upload(data, mime="image/png", sha256=sha)  # discovery is cached

    assert uploaded == UploadedImage(
        url=f"https://media.files.example/{sha}.png",
        sha256=sha,
        size=len(data),
        mime="image/png",
        host="nip96 files.example",
    )
    assert len(mock.uploads) == 2
    request, body = mock.uploads[0]
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert f'name="file"; filename="{sha}.png"'.encode() in body
    assert b"Content-Type: image/png\r\n\r\n" + data in body
    assert b'name="no_transform"\r\n\r\ntrue' in body
    event = decode_auth(request.headers["authorization"], urlsafe=False)
    assert event.kind == 27235
    assert event.pubkey == keys.public_key
    assert tag(event, "u") == API_URL
    assert tag(event, "method") == "POST"
    assert tag(event, "payload") == sha
    assert event.content == ""


async def test_nip96_follows_one_delegation(keys: Keys, png: tuple[bytes, str]) -> None:
    data, sha = png
    well_known: dict[str, dict[str, object]] = {
        "relay.example": {"api_url": "", "delegated_to_url": "https://files.example"},
        "files.example": {"api_url": API_URL},
    }
    mock = Nip96Mock(nip96_reply, well_known)
    async with httpx.AsyncClient(transport=httpx.MockTransport(mock)) as client:
        uploaded = await Nip96Host("https://relay.example/", keys, client=client).upload(
            data, mime="image/png", sha256=sha
        )
    assert uploaded.sha256 == sha


async def test_nip96_api_url_given_directly_skips_discovery(
    keys: Keys, png: tuple[bytes, str]
) -> None:
    data, sha = png
    mock = Nip96Mock(nip96_reply, {})
    async with httpx.AsyncClient(transport=httpx.MockTransport(mock)) as client:
        uploaded = await Nip96Host(API_URL, keys, client=client).upload(
            data, mime="image/png", sha256=sha
        )
    assert uploaded.url.endswith(f"{sha}.png")


async def test_nip96_reply_for_another_file_is_refused(keys: Keys, png: tuple[bytes, str]) -> None:
    data, sha = png
    mock = Nip96Mock(lambda payload: nip96_reply(payload, ox="1" * 64), {})
    async with httpx.AsyncClient(transport=httpx.MockTransport(mock)) as client:
        with pytest.raises(UploadError, match="different sha256"):
            await Nip96Host(API_URL, keys, client=client).upload(data, mime="image/png", sha256=sha)


async def test_nip96_transformed_file_reports_the_served_hash(
    keys: Keys, png: tuple[bytes, str]
) -> None:
    data, sha = png
    served = "2" * 64
    reply = lambda payload: nip96_reply(payload, x=served, extra=[["size", "1234"]])  # noqa: E731
    mock = Nip96Mock(reply, {})
    async with httpx.AsyncClient(transport=httpx.MockTransport(mock)) as client:
        uploaded = await Nip96Host(API_URL, keys, client=client).upload(
            data, mime="image/png", sha256=sha
        )
    assert (uploaded.sha256, uploaded.size) == (served, 1234)


@pytest.mark.parametrize(
    "reply",
    [
        {"status": "error", "message": "quota exceeded"},
        {"status": "success", "nip94_event": {"tags": [["ox", "%s"]]}},
        {"status": "success", "nip94_event": {"tags": [["url", "https://f.example/a.png"]]}},
        {"nip94_event": {}},
    ],
)
async def test_nip96_bad_replies_are_refused(
    keys: Keys, png: tuple[bytes, str], reply: dict[str, object]
) -> None:
    data, sha = png
    body = json.dumps(reply).replace("%s", sha).encode()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(UploadError):
            await Nip96Host(API_URL, keys, client=client).upload(data, mime="image/png", sha256=sha)


async def test_nip96_missing_well_known_is_an_upload_error(
    keys: Keys, png: tuple[bytes, str]
) -> None:
    data, sha = png
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(Nip96Mock(nip96_reply, {}))
    ) as client:
        with pytest.raises(UploadError, match=r"nip96\.json: HTTP 404"):
            await Nip96Host("https://none.example", keys, client=client).upload(
                data, mime="image/png", sha256=sha
            )


# --- local folder ----------------------------------------------------------------------


async def test_local_folder_names_the_file_by_hash(tmp_path: Path, png: tuple[bytes, str]) -> None:
    data, sha = png
    host = LocalFolderHost(tmp_path / "images", "http://127.0.0.1:8000/img/")
    uploaded = await host.upload(data, mime="image/png", sha256=sha)
    assert uploaded.url == f"http://127.0.0.1:8000/img/{sha}.png"
    assert [p.name for p in (tmp_path / "images").iterdir()] == [f"{sha}.png"]
    assert (tmp_path / "images" / f"{sha}.png").read_bytes() == data
    jpeg = await host.upload(data, mime="image/jpeg", sha256=sha)
    assert jpeg.url.endswith(f"{sha}.jpg")


async def test_local_folder_refuses_a_wrong_hash_or_type(
    tmp_path: Path, png: tuple[bytes, str]
) -> None:
    data, sha = png
    host = LocalFolderHost(tmp_path, "http://127.0.0.1:8000")
    with pytest.raises(UploadError, match="does not match"):
        await host.upload(data, mime="image/png", sha256="0" * 64)
    with pytest.raises(UploadError, match="64 lowercase hex"):
        await host.upload(data, mime="image/png", sha256="../../etc/passwd")
    with pytest.raises(UploadError, match="cannot store"):
        await host.upload(data, mime="text/html", sha256=sha)
    with pytest.raises(UploadError, match="invalid MIME"):
        await host.upload(data, mime="image/png\r\nX: y", sha256=sha)
    assert list(tmp_path.iterdir()) == []


async def test_local_folder_failed_write_leaves_nothing_behind(
    tmp_path: Path, png: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, sha = png
    host = LocalFolderHost(tmp_path, "http://127.0.0.1:8000")
    await host.upload(data, mime="image/png", sha256=sha)
    before = (tmp_path / f"{sha}.png").read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(UploadError, match="could not write"):
        await host.upload(data, mime="image/png", sha256=sha)
    # The earlier complete file is untouched and no temporary file is left.
    assert [p.name for p in tmp_path.iterdir()] == [f"{sha}.png"]
    assert (tmp_path / f"{sha}.png").read_bytes() == before


async def test_local_folder_concurrent_writes_of_one_image(
    tmp_path: Path, png: tuple[bytes, str]
) -> None:
    data, sha = png
    host = LocalFolderHost(tmp_path, "http://127.0.0.1:8000")
    results = await asyncio.gather(
        *(host.upload(data, mime="image/png", sha256=sha) for _ in range(8))
    )
    assert {r.url for r in results} == {f"http://127.0.0.1:8000/{sha}.png"}
    assert [p.name for p in tmp_path.iterdir()] == [f"{sha}.png"]
    assert (tmp_path / f"{sha}.png").read_bytes() == data


def test_local_folder_needs_an_http_base_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        LocalFolderHost(tmp_path, "file:///srv")


# --- fallback --------------------------------------------------------------------------


class FailingHost:
    def __init__(self, name: str, error: Exception) -> None:
        self.name = name
        self.error = error
        self.calls = 0

    async def upload(self, data: bytes, *, mime: str, sha256: str) -> UploadedImage:
        self.calls += 1
        raise self.error


async def test_fallback_uses_the_next_host(tmp_path: Path, png: tuple[bytes, str]) -> None:
    data, sha = png
    first = FailingHost("broken", UploadError("HTTP 500"))
    buggy = FailingHost("buggy", RuntimeError("oops"))
    local = LocalFolderHost(tmp_path, "http://127.0.0.1:9")
    assert isinstance(local, ImageHost)
    uploaded = await upload_with_fallback([first, buggy, local], data, mime="image/png", sha256=sha)
    assert uploaded.host == "local folder"
    assert (first.calls, buggy.calls) == (1, 1)


async def test_fallback_stops_at_the_first_success(tmp_path: Path, png: tuple[bytes, str]) -> None:
    data, sha = png
    later = FailingHost("later", UploadError("never reached"))
    uploaded = await upload_with_fallback(
        [LocalFolderHost(tmp_path, "http://127.0.0.1:9"), later], data, mime="image/png", sha256=sha
    )
    assert uploaded.url.endswith(".png")
    assert later.calls == 0


async def test_all_hosts_failing_summarises_each_without_secrets(
    keys: Keys, png: tuple[bytes, str]
) -> None:
    data, sha = png
    transport = httpx.MockTransport(
        lambda request: httpx.Response(403, headers={"X-Reason": "banned"})
    )
    async with httpx.AsyncClient(transport=transport) as client:
        hosts: list[ImageHost] = [
            BlossomHost(["https://a.example"], keys, client=client),
            Nip96Host(API_URL, keys, client=client),
            FailingHost("custom", RuntimeError("secret detail")),
        ]
        with pytest.raises(UploadError) as caught:
            await upload_with_fallback(hosts, data, mime="image/png", sha256=sha)
    message = str(caught.value)
    assert "blossom a.example: HTTP 403 (banned)" in message
    assert "nip96 files.example: HTTP 403 (banned)" in message
    assert "custom: unexpected RuntimeError" in message
    assert "secret detail" not in message
    assert keys.secret_hex() not in message
    assert "Nostr " not in message


async def test_fallback_with_no_hosts() -> None:
    with pytest.raises(UploadError, match="no image host"):
        await upload_with_fallback([], b"x", mime="image/png", sha256="0" * 64)


# --- serve_folder ----------------------------------------------------------------------


def raw_request(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """Send ``path`` exactly as given (httpx would normalise ``..`` away)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    folder = tmp_path / "public"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("top secret")
    with serve_folder(folder) as server:
        yield folder, server.port


@pytest.mark.integration
async def test_served_folder_round_trip_with_local_host(
    served: tuple[Path, int], png: tuple[bytes, str]
) -> None:
    folder, port = served
    data, sha = png
    uploaded = await LocalFolderHost(folder, f"http://127.0.0.1:{port}").upload(
        data, mime="image/png", sha256=sha
    )
    async with httpx.AsyncClient() as client:
        response = await client.get(uploaded.url)
        head = await client.head(uploaded.url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(data))


@pytest.mark.integration
@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub/../../secret.txt",
        "//etc/passwd",
        "/",
        "/.hidden",
        "/link.png",
        "/subdir",
        "/subdir/inner.png",
        "/missing.png",
    ],
)
def test_served_folder_refuses_anything_but_plain_files_in_it(
    served: tuple[Path, int], path: str
) -> None:
    folder, port = served
    (folder / ".hidden").write_text("hidden")
    (folder / "link.png").symlink_to(folder.parent / "secret.txt")
    (folder / "subdir").mkdir()
    (folder / "subdir" / "inner.png").write_bytes(b"inner")
    status, _, body = raw_request(port, "GET", path)
    assert status in (400, 404)
    for leaked in (b"secret", b"hidden", b"inner"):
        assert leaked not in body


@pytest.mark.integration
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_served_folder_allows_only_get_and_head(served: tuple[Path, int], method: str) -> None:
    folder, port = served
    (folder / "a.png").write_bytes(b"x")
    status, headers, _ = raw_request(port, method, "/a.png")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert (folder / "a.png").read_bytes() == b"x"


def test_serve_folder_needs_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        serve_folder(tmp_path / "missing")
