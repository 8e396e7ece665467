"""fetch_image against hostile URLs and servers, with httpx.MockTransport and a fake resolver."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import socket
import struct
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from nostr_imagegen.errors import ConfigError, FetchError
from nostr_imagegen.service.fetch import FetchedImage, FetchPolicy, fetch_image, system_resolver

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V4_B = "151.101.1.69"
PUBLIC_V6 = "2606:4700::6810:84e5"


def png_bytes(
    size: tuple[int, int] = (8, 6), mode: str = "RGB", color: object = (200, 10, 30)
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")  # type: ignore[arg-type]
    return buffer.getvalue()


def jpeg_bytes(size: tuple[int, int] = (16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (0, 128, 255)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose pixel data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


class FakeDNS:
    """An injected resolver: host -> addresses; records every lookup."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.table = dict(table)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.table[host])


Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """A MockTransport handler keyed by (Host header, path); records the requests it gets."""

    def __init__(self, routes: Mapping[tuple[str, str], Callable[[], httpx.Response]]) -> None:
        self.routes = dict(routes)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.headers["host"], request.url.path))
        if route is None:
            return httpx.Response(404)
        return route()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


def image_response(body: bytes, content_type: str = "image/png") -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(200, headers={"Content-Type": content_type}, content=body)


def redirect(location: str, status: int = 302) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(status, headers={"Location": location})


async def fetch(
    url: str,
    server: Server,
    dns: FakeDNS,
    policy: FetchPolicy | None = None,
) -> FetchedImage:
    async with server.client() as client:
        return await fetch_image(url, policy=policy or FetchPolicy(), client=client, resolver=dns)


# --- accepted images -------------------------------------------------------------------


async def test_valid_png_is_fetched_decoded_and_hashed() -> None:
    body = png_bytes((8, 6))
    server = Server({("img.example", "/cat.png"): image_response(body)})
    dns = FakeDNS({"img.example": [PUBLIC_V4]})
    async with server.client() as client:
        fetched = await fetch_image("https://img.example/cat.png", client=client, resolver=dns)
    assert fetched.image.mode == "RGB"
    assert fetched.image.size == (8, 6)
    assert fetched.image.getpixel((0, 0)) == (200, 10, 30)
    assert fetched.mime == "image/png"
    assert fetched.size_bytes == len(body)
    assert fetched.sha256 == hashlib.sha256(body).hexdigest()
    assert fetched.final_url == "https://img.example/cat.png"


async def test_connection_is_pinned_to_the_validated_address() -> None:
    server = Server({("img.example", "/a.png"): image_response(png_bytes())})
    dns = FakeDNS({"img.example": [PUBLIC_V4]})
    await fetch("https://img.example/a.png", server, dns)
    (request,) = server.requests
    # The socket goes to the IP we checked; Host and TLS SNI keep the name.
    assert request.url.host == PUBLIC_V4
    assert request.headers["host"] == "img.example"
    assert request.extensions["sni_hostname"] == "img.example"
    assert dns.lookups == ["img.example"]


async def test_ipv6_address_is_pinned_and_port_kept_in_host_header() -> None:
    server = Server({("img.example:8443", "/a.png"): image_response(png_bytes())})
    dns = FakeDNS({"img.example": [PUBLIC_V6]})
    await fetch("https://img.example:8443/a.png", server, dns)
    (request,) = server.requests
    assert request.url.host == PUBLIC_V6
    assert request.url.port == 8443


async def test_real_format_wins_over_content_type() -> None:
    body = jpeg_bytes()
    server = Server({("img.example", "/x"): image_response(body, "application/octet-stream")})
    fetched = await fetch("http://img.example/x", server, FakeDNS({"img.example": [PUBLIC_V4]}))
    assert fetched.mime == "image/jpeg"


async def test_transparency_is_flattened_onto_white() -> None:
    body = png_bytes((4, 4), "RGBA", (255, 0, 0, 0))
    server = Server({("img.example", "/t.png"): image_response(body)})
    fetched = await fetch(
        "https://img.example/t.png", server, FakeDNS({"img.example": [PUBLIC_V4]})
    )
    image = fetched.image
    assert image.mode == "RGB"
    assert image.getpixel((1, 1)) == (255, 255, 255)


async def test_unreachable_first_address_falls_back_to_the_next() -> None:
    body = png_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == PUBLIC_V4:
            raise httpx.ConnectError("unreachable", request=request)
        return httpx.Response(200, content=body)

    dns = FakeDNS({"img.example": [PUBLIC_V4, PUBLIC_V4_B]})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        fetched = await fetch_image("https://img.example/a.png", client=client, resolver=dns)
    assert fetched.sha256 == hashlib.sha256(body).hexdigest()


# --- addresses -------------------------------------------------------------------------

FORBIDDEN = [
    "127.0.0.1",
    "127.255.0.9",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.5",
    "172.31.255.254",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "192.0.0.170",
    "198.18.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",
    "64:ff9b::a00:1",
    "2002:c0a8:101::1",
]


@pytest.mark.parametrize("address", FORBIDDEN)
async def test_host_resolving_to_a_non_public_address_is_refused(address: str) -> None:
    server = Server({("evil.example", "/a.png"): image_response(png_bytes())})
    dns = FakeDNS({"evil.example": [address]})
    with pytest.raises(FetchError, match="not a public internet address") as caught:
        await fetch("https://evil.example/a.png", server, dns)
    assert server.requests == []
    assert address not in str(caught.value)


@pytest.mark.parametrize("address", ["::ffff:93.184.215.14", "64:ff9b::808:808", PUBLIC_V6])
async def test_ipv6_forms_of_public_addresses_are_allowed(address: str) -> None:
    server = Server({("img.example", "/a.png"): image_response(png_bytes())})
    await fetch("https://img.example/a.png", server, FakeDNS({"img.example": [address]}))
    assert len(server.requests) == 1


async def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    server = Server({("mixed.example", "/a.png"): image_response(png_bytes())})
    dns = FakeDNS({"mixed.example": [PUBLIC_V4, "10.0.0.7"]})
    with pytest.raises(FetchError, match="not a public"):
        await fetch("https://mixed.example/a.png", server, dns)
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/a.png",
        "http://[::ffff:10.0.0.1]/a.png",
        "http://[fe80::1%25eth0]/a.png",
        "http://0.0.0.0:80/",
    ],
)
async def test_ip_literal_urls_are_checked_without_dns(url: str) -> None:
    server = Server({})
    dns = FakeDNS({})
    with pytest.raises(FetchError, match="not a public"):
        await fetch(url, server, dns)
    assert server.requests == []
    assert dns.lookups == []


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("2130706433", "not a public"),
        ("0x7f.1", "not a public"),
        ("127.1", "not a public"),
        ("0177.0.0.1", "not a valid URL"),  # httpx itself refuses this spelling
    ],
)
async def test_numeric_host_spellings_of_loopback_are_refused(host: str, message: str) -> None:
    async def numeric_only(name: str, port: int) -> list[str]:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        return [str(info[4][0]) for info in infos]

    server = Server({})
    async with server.client() as client:
        with pytest.raises(FetchError, match=message):
            await fetch_image(f"http://{host}/a.png", client=client, resolver=numeric_only)
    assert server.requests == []


async def test_allow_private_addresses_lets_a_local_host_through() -> None:
    server = Server({("dev.local", "/a.png"): image_response(png_bytes())})
    policy = FetchPolicy(allow_private_addresses=True)
    fetched = await fetch(
        "http://dev.local/a.png", server, FakeDNS({"dev.local": ["127.0.0.1"]}), policy
    )
    assert fetched.mime == "image/png"


async def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(FetchError, match="could not be resolved"):
        await fetch("https://nowhere.example/a.png", Server({}), FakeDNS({}))


async def test_system_resolver_resolves_an_ip_literal_without_dns() -> None:
    assert await system_resolver("127.0.0.1", 80) == ["127.0.0.1"]


# --- URL form --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://img.example/a.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "gopher://img.example/",
        "javascript:alert(1)",
        "//img.example/a.png",
        "img.example/a.png",
    ],
)
async def test_non_http_schemes_are_refused(url: str) -> None:
    server = Server({})
    dns = FakeDNS({"img.example": [PUBLIC_V4]})
    with pytest.raises(FetchError, match="scheme"):
        await fetch(url, server, dns)
    assert server.requests == []
    assert dns.lookups == []


@pytest.mark.parametrize(
    "url", ["https://user:pw@img.example/a.png", "https://user@img.example/a.png"]
)
async def test_userinfo_is_refused(url: str) -> None:
    server = Server({})
    with pytest.raises(FetchError, match="user name or password"):
        await fetch(url, server, FakeDNS({"img.example": [PUBLIC_V4]}))
    assert server.requests == []


async def test_overlong_and_empty_urls_are_refused() -> None:
    policy = FetchPolicy(max_url_length=100)
    with pytest.raises(FetchError, match="longer than 100"):
        await fetch("https://img.example/" + "a" * 100, Server({}), FakeDNS({}), policy)
    with pytest.raises(FetchError, match="empty"):
        await fetch("  ", Server({}), FakeDNS({}))


async def test_port_outside_the_allowed_set_is_refused() -> None:
    policy = FetchPolicy(allowed_ports=frozenset({443}))
    with pytest.raises(FetchError, match="port 22"):
        await fetch(
            "https://img.example:22/", Server({}), FakeDNS({"img.example": [PUBLIC_V4]}), policy
        )


# --- redirects -------------------------------------------------------------------------


async def test_redirects_are_followed_and_each_hop_revalidated() -> None:
    body = png_bytes()
    server = Server(
        {
            ("a.example", "/start"): redirect("https://b.example/next", 301),
            ("b.example", "/next"): redirect("/final.png", 307),
            ("b.example", "/final.png"): image_response(body),
        }
    )
    dns = FakeDNS({"a.example": [PUBLIC_V4], "b.example": [PUBLIC_V4_B]})
    fetched = await fetch("https://a.example/start", server, dns)
    assert fetched.final_url == "https://b.example/final.png"
    assert [r.url.host for r in server.requests] == [PUBLIC_V4, PUBLIC_V4_B, PUBLIC_V4_B]
    assert dns.lookups == ["a.example", "b.example", "b.example"]


@pytest.mark.parametrize(
    "location",
    [
        "http://internal.example/a.png",
        "http://127.0.0.1:6379/",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[::1]/",
    ],
)
async def test_redirect_to_a_private_address_is_refused(location: str) -> None:
    server = Server({("pub.example", "/a.png"): redirect(location)})
    dns = FakeDNS({"pub.example": [PUBLIC_V4], "internal.example": ["192.168.0.10"]})
    with pytest.raises(FetchError, match="not a public"):
        await fetch("https://pub.example/a.png", server, dns)
    assert [r.url.host for r in server.requests] == [PUBLIC_V4]


async def test_redirect_to_a_file_url_is_refused() -> None:
    server = Server({("pub.example", "/a.png"): redirect("file:///etc/passwd")})
    with pytest.raises(FetchError, match="scheme 'file'"):
        await fetch("https://pub.example/a.png", server, FakeDNS({"pub.example": [PUBLIC_V4]}))


async def test_redirect_count_is_bounded() -> None:
    server = Server({("loop.example", "/a"): redirect("/a")})
    policy = FetchPolicy(max_redirects=2)
    with pytest.raises(FetchError, match="more than 2 times"):
        await fetch(
            "https://loop.example/a", server, FakeDNS({"loop.example": [PUBLIC_V4]}), policy
        )
    assert len(server.requests) == 3


async def test_redirect_without_location_is_refused() -> None:
    server = Server({("pub.example", "/a"): lambda: httpx.Response(302)})
    with pytest.raises(FetchError, match="without Location"):
        await fetch("https://pub.example/a", server, FakeDNS({"pub.example": [PUBLIC_V4]}))


# --- allow_hosts: trusted internal origins ---------------------------------------------

STORE = "store.internal"
STORE_V4 = "10.0.0.5"


def store_policy(*origins: str) -> FetchPolicy:
    return FetchPolicy(allow_hosts=frozenset(origins or (f"{STORE}:8080",)))


async def test_an_allowed_origin_skips_the_public_address_rule() -> None:
    server = Server({(f"{STORE}:8080", "/a.png"): image_response(png_bytes())})
    dns = FakeDNS({STORE: [STORE_V4]})
    fetched = await fetch(f"http://{STORE}:8080/a.png", server, dns, store_policy())
    assert fetched.image.size == (8, 6)
    (request,) = server.requests
    assert request.url.host == STORE_V4  # still pinned to the address that was resolved


@pytest.mark.parametrize(
    "url",
    [
        f"http://{STORE}:8081/a.png",  # the same host on another port
        f"http://{STORE}/a.png",  # the default port is another port too
        f"http://{STORE_V4}:8080/a.png",  # the same address, not the origin the operator named
        "http://other.internal:8080/a.png",  # another name for the same address
    ],
)
async def test_only_the_exact_allowed_host_and_port_skip_the_rule(url: str) -> None:
    server = Server({})
    dns = FakeDNS({STORE: [STORE_V4], "other.internal": [STORE_V4]})
    with pytest.raises(FetchError, match="not a public"):
        await fetch(url, server, dns, store_policy())
    assert server.requests == []


@pytest.mark.parametrize(
    "location",
    [
        f"http://{STORE}:8081/a.png",
        f"http://{STORE_V4}:8080/a.png",
        "http://127.0.0.1:8080/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/a.png",
        "http://other.internal:8080/a.png",
    ],
)
async def test_a_redirect_from_an_allowed_origin_is_checked_again(location: str) -> None:
    server = Server({(f"{STORE}:8080", "/a.png"): redirect(location)})
    dns = FakeDNS({STORE: [STORE_V4], "other.internal": ["192.168.1.9"]})
    with pytest.raises(FetchError, match="not a public"):
        await fetch(f"http://{STORE}:8080/a.png", server, dns, store_policy())
    assert [r.url.host for r in server.requests] == [STORE_V4]


async def test_an_allowed_origin_may_redirect_to_a_public_host_or_another_allowed_origin() -> None:
    body = png_bytes()
    server = Server(
        {
            (f"{STORE}:8080", "/a.png"): redirect("http://[fd00::5]:9000/b.png"),
            ("[fd00::5]:9000", "/b.png"): redirect("https://img.example/c.png"),
            ("img.example", "/c.png"): image_response(body),
        }
    )
    dns = FakeDNS({STORE: [STORE_V4], "img.example": [PUBLIC_V4]})
    policy = store_policy(f"{STORE}:8080", "[FD00::0005]:9000")
    fetched = await fetch(f"http://{STORE}:8080/a.png", server, dns, policy)
    assert fetched.final_url == "https://img.example/c.png"
    assert [r.url.host for r in server.requests] == [STORE_V4, "fd00::5", PUBLIC_V4]


def test_allow_hosts_are_kept_in_canonical_form() -> None:
    policy = FetchPolicy(
        allow_hosts=frozenset(
            {"Store.Internal:8080", "store.internal.:8080", " 10.0.0.5:9000 ", "[FD00::0005]:443"}
        )
    )
    assert policy.allow_hosts == frozenset(
        {"store.internal:8080", "10.0.0.5:9000", "[fd00::5]:443"}
    )
    assert policy == FetchPolicy(
        allow_hosts=frozenset({"store.internal:8080", "10.0.0.5:9000", "[fd00::5]:443"})
    )


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("http://store.internal:8080", "without a scheme"),
        ("store.internal:8080/images", "without a path"),
        ("store.internal:8080?x=1", "without a path"),
        ("user@store.internal:8080", "without a user name"),
        ("store.internal", "port is required"),
        (":8080", "port is required"),
        ("", "port is required"),
        ("store.internal:0", "port from 1 to 65535"),
        ("store.internal:65536", "port from 1 to 65535"),
        ("store.internal:-1", "port from 1 to 65535"),
        ("store.internal:http", "port from 1 to 65535"),
        ("fd00::5:443", "IPv6 address in brackets"),
        ("[fd00::5]", "[IPv6 address]:port"),
        ("[fd00::zz]:443", "no valid IPv6 address"),
        ("[fe80::1%eth0]:443", "zone index"),
        ("127.1:8080", "dotted-quad"),
        ("2130706433:8080", "dotted-quad"),
        ("0x7f.0.0.1:8080", "dotted-quad"),
        ("*.internal:8080", "not a DNS name"),
        ("store_internal:8080", "not a DNS name"),
        ("store internal:8080", "not a DNS name"),
    ],
)
def test_bad_allow_hosts_entries_are_config_errors_naming_them(entry: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        FetchPolicy(allow_hosts=frozenset({"ok.internal:1", entry}))
    assert repr(entry) in str(caught.value)
    assert complaint in str(caught.value)


def test_allow_hosts_must_be_a_collection_and_fit_the_allowed_ports() -> None:
    with pytest.raises(ConfigError, match="not one string"):
        FetchPolicy(allow_hosts="store.internal:8080")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"'store\.internal:8080'.*allowed_ports"):
        FetchPolicy(allowed_ports=frozenset({443}), allow_hosts=frozenset({"store.internal:8080"}))
    with pytest.raises(ConfigError, match="at most 64"):
        FetchPolicy(allow_hosts=frozenset(f"store{n}.internal:80" for n in range(65)))


# --- size, time, content ---------------------------------------------------------------


async def test_too_big_by_content_length_is_refused_before_reading() -> None:
    consumed: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for index in range(100):
            consumed.append(index)
            yield b"x" * 1024

    server = Server(
        {
            ("big.example", "/a.png"): lambda: httpx.Response(
                200, headers={"Content-Length": str(100 * 1024)}, content=body()
            )
        }
    )
    policy = FetchPolicy(max_bytes=10_000)
    with pytest.raises(FetchError, match="larger than 10000 bytes"):
        await fetch(
            "https://big.example/a.png", server, FakeDNS({"big.example": [PUBLIC_V4]}), policy
        )
    assert consumed == []


async def test_too_big_stream_without_content_length_is_cut_off() -> None:
    consumed: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for index in range(1000):
            consumed.append(index)
            yield b"x" * 1024

    server = Server({("big.example", "/a.png"): lambda: httpx.Response(200, content=body())})
    policy = FetchPolicy(max_bytes=10_000)
    with pytest.raises(FetchError, match="larger than 10000 bytes"):
        await fetch(
            "https://big.example/a.png", server, FakeDNS({"big.example": [PUBLIC_V4]}), policy
        )
    assert len(consumed) < 20


async def test_slow_server_hits_the_total_deadline() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, content=png_bytes())

    policy = FetchPolicy(timeout_s=0.2)
    dns = FakeDNS({"slow.example": [PUBLIC_V4]})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(FetchError, match=r"within 0\.2 seconds"):
            await fetch_image(
                "https://slow.example/a.png", policy=policy, client=client, resolver=dns
            )


async def test_transport_timeout_becomes_fetch_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    dns = FakeDNS({"slow.example": [PUBLIC_V4]})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(FetchError, match="timed out"):
            await fetch_image("https://slow.example/a.png", client=client, resolver=dns)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"<html>hello</html>", "text/html", "does not point to an image"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"/>',
            "image/svg+xml",
            "does not point to an image",
        ),
        (b"\x00\x01 not an image at all", "image/png", "not a supported image"),
        (b"%PDF-1.4 something", "application/octet-stream", "not a supported image"),
        (b"", "image/png", "empty"),
    ],
)
async def test_non_images_are_refused(body: bytes, content_type: str, message: str) -> None:
    server = Server({("img.example", "/a.png"): image_response(body, content_type)})
    with pytest.raises(FetchError, match=message):
        await fetch("https://img.example/a.png", server, FakeDNS({"img.example": [PUBLIC_V4]}))


async def test_format_outside_allowed_mimes_is_refused() -> None:
    server = Server({("img.example", "/a.jpg"): image_response(jpeg_bytes(), "image/jpeg")})
    policy = FetchPolicy(allowed_mimes=frozenset({"image/png"}))
    with pytest.raises(FetchError, match="not a supported image"):
        await fetch(
            "https://img.example/a.jpg", server, FakeDNS({"img.example": [PUBLIC_V4]}), policy
        )


async def test_truncated_image_is_refused() -> None:
    body = png_bytes((64, 64))[:-40]
    server = Server({("img.example", "/a.png"): image_response(body)})
    with pytest.raises(FetchError, match="truncated or corrupt"):
        await fetch("https://img.example/a.png", server, FakeDNS({"img.example": [PUBLIC_V4]}))


async def test_compressed_transfer_is_refused() -> None:
    # A gzip body could expand a thousandfold past max_bytes inside one decoded chunk.
    async def body() -> AsyncIterator[bytes]:
        yield gzip.compress(png_bytes())

    server = Server(
        {
            ("img.example", "/a.png"): lambda: httpx.Response(
                200, headers={"Content-Encoding": "gzip"}, content=body()
            )
        }
    )
    with pytest.raises(FetchError, match="gzip-compressed"):
        await fetch("https://img.example/a.png", server, FakeDNS({"img.example": [PUBLIC_V4]}))


async def test_http_error_status_is_refused() -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        await fetch(
            "https://img.example/missing.png", Server({}), FakeDNS({"img.example": [PUBLIC_V4]})
        )


async def test_decompression_bomb_is_refused() -> None:
    # 100000 x 100000 pixels claimed in a ~100-byte file: Pillow's guard refuses to open it.
    body = png_header_only(100_000, 100_000)
    server = Server({("bomb.example", "/b.png"): image_response(body)})
    with pytest.raises(FetchError, match=r"too many pixels|more than"):
        await fetch("https://bomb.example/b.png", server, FakeDNS({"bomb.example": [PUBLIC_V4]}))


async def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    # 7000 x 7000 is under Pillow's own guard but over our 40 MP default. The pixel data is
    # garbage: were it decoded first, the error would be "truncated or corrupt".
    body = png_header_only(7000, 7000)
    server = Server({("big.example", "/b.png"): image_response(body)})
    with pytest.raises(FetchError, match="7000x7000, more than 40000000 pixels"):
        await fetch("https://big.example/b.png", server, FakeDNS({"big.example": [PUBLIC_V4]}))


async def test_small_pixel_limit_refuses_a_real_image() -> None:
    server = Server({("img.example", "/a.png"): image_response(png_bytes((100, 100)))})
    policy = FetchPolicy(max_pixels=5000)
    with pytest.raises(FetchError, match="100x100"):
        await fetch(
            "https://img.example/a.png", server, FakeDNS({"img.example": [PUBLIC_V4]}), policy
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_bytes": 0},
        {"timeout_s": 0},
        {"max_redirects": -1},
        {"allowed_schemes": ("https", "file")},
        {"allowed_mimes": frozenset({"image/svg+xml"})},
        {"max_pixels": 10**12},
    ],
)
def test_policy_rejects_unsafe_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        FetchPolicy(**kwargs)  # type: ignore[arg-type]


# --- a real socket: pinning really connects to the validated address -------------------


class _ImageHandler(BaseHTTPRequestHandler):
    body = png_bytes((5, 7))
    seen_hosts: list[str] = []  # noqa: RUF012 - test-only class state

    def do_GET(self) -> None:
        type(self).seen_hosts.append(self.headers.get("Host", ""))
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.integration
async def test_real_connection_goes_to_the_pinned_address(image_server: int) -> None:
    # "pinned.invalid" exists nowhere in DNS: the fetch works only because we connect to
    # the address our resolver validated, sending the name in the Host header.
    _ImageHandler.seen_hosts.clear()
    dns = FakeDNS({"pinned.invalid": ["127.0.0.1"]})
    policy = FetchPolicy(allow_private_addresses=True)
    fetched = await fetch_image(
        f"http://pinned.invalid:{image_server}/a.png", policy=policy, resolver=dns
    )
    assert fetched.image.size == (5, 7)
    assert _ImageHandler.seen_hosts == [f"pinned.invalid:{image_server}"]


@pytest.mark.integration
async def test_real_local_server_is_refused_by_default(image_server: int) -> None:
    _ImageHandler.seen_hosts.clear()
    with pytest.raises(FetchError, match="not a public"):
        await fetch_image(f"http://127.0.0.1:{image_server}/a.png")
    assert _ImageHandler.seen_hosts == []


class _RedirectHandler(BaseHTTPRequestHandler):
    """Answers every GET with a 302 to ``location``."""

    location = ""
    seen_paths: list[str] = []  # noqa: RUF012 - test-only class state

    def do_GET(self) -> None:
        type(self).seen_paths.append(self.path)
        self.send_response(302)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def redirect_server() -> Iterator[int]:
    _RedirectHandler.seen_paths.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RedirectHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.integration
async def test_real_allowed_origin_is_fetched(image_server: int) -> None:
    _ImageHandler.seen_hosts.clear()
    policy = FetchPolicy(allow_hosts=frozenset({f"127.0.0.1:{image_server}"}))
    fetched = await fetch_image(f"http://127.0.0.1:{image_server}/a.png", policy=policy)
    assert fetched.image.size == (5, 7)
    # By name too: the name is resolved, checked against the list and the socket pinned.
    dns = FakeDNS({"images.internal": ["127.0.0.1"]})
    policy = FetchPolicy(allow_hosts=frozenset({f"images.internal:{image_server}"}))
    url = f"http://images.internal:{image_server}/b.png"
    fetched = await fetch_image(url, policy=policy, resolver=dns)
    assert fetched.final_url == url
    assert _ImageHandler.seen_hosts == [
        f"127.0.0.1:{image_server}",
        f"images.internal:{image_server}",
    ]


@pytest.mark.integration
@pytest.mark.parametrize("target", ["127.0.0.1", "localhost"])
async def test_real_allowed_origin_redirecting_to_another_loopback_port_is_refused(
    image_server: int, redirect_server: int, target: str
) -> None:
    _ImageHandler.seen_hosts.clear()
    _RedirectHandler.location = f"http://{target}:{image_server}/secret.png"
    policy = FetchPolicy(allow_hosts=frozenset({f"127.0.0.1:{redirect_server}"}))
    with pytest.raises(FetchError, match=f"host {target} is not a public"):
        await fetch_image(f"http://127.0.0.1:{redirect_server}/a.png", policy=policy)
    assert _RedirectHandler.seen_paths == ["/a.png"]  # the allowed origin was asked
    assert _ImageHandler.seen_hosts == []  # the other port never was


@pytest.mark.integration
async def test_real_loopback_origin_not_in_allow_hosts_is_still_refused(
    image_server: int, redirect_server: int
) -> None:
    _ImageHandler.seen_hosts.clear()
    policy = FetchPolicy(allow_hosts=frozenset({f"127.0.0.1:{redirect_server}"}))
    for url in (f"http://127.0.0.1:{image_server}/a.png", f"http://localhost:{image_server}/"):
        with pytest.raises(FetchError, match="not a public"):
            await fetch_image(url, policy=policy)
    assert _ImageHandler.seen_hosts == []


async def test_a_callers_client_defaults_never_reach_the_customers_host() -> None:
    server = Server({("img.example", "/a.png"): image_response(png_bytes())})
    dns = FakeDNS({"img.example": [PUBLIC_V4]})
    transport = httpx.MockTransport(server)
    async with httpx.AsyncClient(
        transport=transport, headers={"X-Api-Key": "operator-secret"}, auth=("user", "pw")
    ) as client:
        await fetch_image("https://img.example/a.png", client=client, resolver=dns)
    (request,) = server.requests
    assert "authorization" not in request.headers
    assert "x-api-key" not in request.headers
