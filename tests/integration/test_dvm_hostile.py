"""Hostile requests against a DVM on a real relay: each is answered with an `error` feedback
(or ignored, where NIP-90 says so), nothing is fetched from a forbidden address, and the
next valid job is still served."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from dvm_harness import (  # noqa: F401 - fixtures
    Customer,
    Dvm,
    send_raw,
    tiny_engine_fixture,
    tiny_model_folder_fixture,
)
from PIL import Image

from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.client import build_request
from nostr_imagegen.service.fetch import FetchPolicy, fetch_image
from nostr_imagegen.service.ledger import JobState

pytestmark = pytest.mark.integration

PROMPT = "A purple ostrich watching the sunset"
SMALL = (("size", "64x64"),)


class _Files(ThreadingHTTPServer):
    """A 127.0.0.1 HTTP server with fixed bodies per path, counting every request."""

    def __init__(self, files: dict[str, tuple[str, bytes]]) -> None:
        self.files = files
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                mime, body = server.files.get(self.path, ("text/plain", b""))
                self.send_response(200 if self.path in server.files else 404)
                self.send_header("Content-Type", mime)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def files() -> Iterator[_Files]:
    png = io.BytesIO()
    Image.new("RGB", (48, 40), (200, 30, 90)).save(png, "PNG")
    server = _Files(
        {
            "/cat.png": ("image/png", png.getvalue()),
            "/not-an-image.png": ("image/png", b"hello, I am text pretending to be a PNG" * 10),
            "/bomb.png": ("image/png", _bomb_png(100_000, 100_000)),
        }
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _bomb_png(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width x height`` 1-bit pixels (a decompression bomb:
    the compressed rows of zeros would inflate to gigabytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + width // 8) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)


class RecordingTransport(httpx.AsyncBaseTransport):
    """Records every request that would go out, and sends none."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        raise httpx.ConnectError("the test transport never connects", request=request)


def _request(keys: Keys, *params: tuple[str, ...], **kwargs: Any) -> Event:
    return build_request(keys, prompt=kwargs.pop("prompt", PROMPT), params=params, **kwargs)


def _raw(keys: Keys, tags: list[tuple[str, ...]], content: str = "") -> Event:
    return sign_event(UnsignedEvent(kind=5100, tags=tuple(tags), content=content), keys)


async def _expect_error(customer: Customer, request: Event, *words: str) -> str:
    outcome = await customer.submit(request, timeout_s=30)
    assert outcome.result is None, f"served a hostile request: {request.tags}"
    assert not outcome.timed_out, f"no answer to {request.tags!r:.200}"
    reason = (outcome.error or "").lower()
    for word in words:
        assert word.lower() in reason, f"{word!r} not in {reason!r}"
    return reason


async def test_ssrf_urls_are_refused_before_any_connection(
    relay_url: str, tmp_path: Path, tiny_engine: Any, files: _Files
) -> None:
    transport = RecordingTransport()
    client = httpx.AsyncClient(transport=transport)
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if host == "localhost" else ["10.1.2.3"]

    async def fetcher(url: str) -> Image.Image:
        # The production path (default policy: public addresses only), with the network seams
        # recorded: nothing may reach the transport.
        return (
            await fetch_image(url, policy=FetchPolicy(), client=client, resolver=resolver)
        ).image

    forbidden = [
        f"{files.base}/cat.png",  # loopback, a live server that counts hits
        "http://10.0.0.1/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/cat.png",
        "http://[::ffff:127.0.0.1]/cat.png",
        "http://0.0.0.0/cat.png",
        "http://192.168.1.1/cat.png",
        "http://100.64.0.1/cat.png",
        "http://localhost/cat.png",
        "http://internal.example/cat.png",  # resolves to 10.1.2.3 (fake resolver)
    ]
    async with (
        Dvm([relay_url], tmp_path, tiny_engine, fetcher=fetcher),
        Customer([relay_url]) as customer,
    ):
        for url in forbidden:
            await _expect_error(
                customer, _request(customer.keys, *SMALL, image_url=url), "not a public"
            )
        await _expect_error(
            customer, _request(customer.keys, image_url="file:///etc/passwd"), "url"
        )
        outcome = await customer.submit(_request(customer.keys, *SMALL))
        assert outcome.result is not None, outcome.error
    await client.aclose()
    assert transport.requests == []
    assert files.hits == []
    assert set(lookups) <= {"localhost", "internal.example"}


async def test_inputs_that_are_not_images_or_are_bombs_get_errors(
    relay_url: str, tmp_path: Path, tiny_engine: Any, files: _Files
) -> None:
    # Only here: a policy that may fetch from 127.0.0.1, where the test server lives.
    policy = FetchPolicy(allow_private_addresses=True, timeout_s=10)
    async with (
        Dvm([relay_url], tmp_path, tiny_engine, fetch_policy=policy),
        Customer([relay_url]) as customer,
    ):
        await _expect_error(
            customer,
            _request(customer.keys, *SMALL, image_url=f"{files.base}/not-an-image.png"),
            "not a supported image",
        )
        await _expect_error(
            customer,
            _request(customer.keys, *SMALL, image_url=f"{files.base}/bomb.png"),
            "pixels",
        )
        await _expect_error(
            customer, _request(customer.keys, *SMALL, image_url=f"{files.base}/missing.png"), "404"
        )
        # A real image from the same server is altered (img2img) and served.
        outcome = await customer.submit(
            _request(customer.keys, *SMALL, ("strength", "0.5"), image_url=f"{files.base}/cat.png")
        )
        assert outcome.result is not None, outcome.error
    assert files.hits.count("/cat.png") == 1


async def test_hostile_requests_get_errors_and_the_next_job_is_served(
    relay_url: str, tmp_path: Path, tiny_engine: Any
) -> None:
    async with (
        Dvm([relay_url], tmp_path, tiny_engine) as dvm,
        Customer([relay_url]) as customer,
    ):
        keys = customer.keys
        cases: list[tuple[Event, tuple[str, ...]]] = [
            (_request(keys, ("size", "100000x100000")), ("size",)),
            (_request(keys, ("size", "4096x4096")), ("4096",)),
            (_request(keys, ("upscale", "1000")), ("upscale",)),
            (_request(keys, ("steps", "100000")), ("steps",)),
            (_request(keys, ("guidance_scale", "nan")), ("guidance",)),
            (_request(keys, ("ratio", "5:4")), ("5:4",)),
            (_request(keys, ("model", "sdxl-ultra")), ("sdxl-ultra",)),
            (_request(keys, ("model", "../../etc/passwd")), ("model",)),
            (_request(keys, ("model", "/srv/models/secret.safetensors")), ("model",)),
            (_request(keys, ("lora", "/etc/shadow")), ("lora",)),
            (_request(keys, ("lora", "not-offered")), ("not-offered",)),
            (_request(keys, prompt="x" * 5000), ("prompt",)),
            (_request(keys, *[("seed", str(i)) for i in range(150)]), ("tags",)),
            (_raw(keys, [("i", PROMPT, "text"), ("param", "ratio", *["1:1"] * 40)]), ("tag",)),
            (_raw(keys, [("i", "", "text")]), ("prompt",)),
            (_raw(keys, [("param", "ratio", "1:1")]), ("prompt",)),
            (
                _raw(keys, [("p", dvm.keys.public_key), ("encrypted",)], content="garbage?iv=xx"),
                ("decrypt",),
            ),
            (_request(keys, *SMALL, output="application/x-sh"), ("output",)),
        ]
        for request, words in cases:
            await _expect_error(customer, request, *words)

        # Ignored, as NIP-90 says: a job addressed to another provider gets no answer at all.
        elsewhere = _request(keys, *SMALL, provider=Keys.generate().public_key)
        ignored = await customer.submit(elsewhere, timeout_s=2)
        assert ignored.timed_out
        assert ignored.feedback == ()
        assert dvm.state(elsewhere.id) is None

        # A forged copy (broken signature) of a valid request: the relay refuses it, and the
        # runner refuses it too when an embedder hands it over directly.
        genuine = _request(keys, *SMALL, prompt="the genuine one")
        forged = {**genuine.to_dict(), "sig": "00" * 64}
        ok = await send_raw(relay_url, forged)
        assert ok[2] is False
        assert dvm.runner is not None
        await dvm.runner.handle_event(relay_url, genuine.model_copy(update={"sig": "00" * 64}))
        assert dvm.state(genuine.id) is None

        outcome = await customer.submit(genuine)
        assert outcome.result is not None, outcome.error
        await dvm.wait_state(genuine.id, JobState.PUBLISHED)
        assert dvm.runner.stats.rejected >= len(cases) - 1
