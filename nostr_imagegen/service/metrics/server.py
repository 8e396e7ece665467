"""The operations endpoint: a small HTTP/1.1 server on the runner's event loop.

    GET /metrics       Prometheus text format (prometheus_client)
    GET /healthz       200 {"healthy": true} or 503 {"healthy": false, "problems": [...]}
    GET /              the status page (service/statuspage/index.html, no build step)
    GET /status.json   what the page shows, refreshed by its script every 2 s
    GET /status.js     the page's script

Only GET and HEAD, one request per connection, requests bounded in size and time: it is
read by Prometheus and a browser, never by the public (bound to loopback by default; see
``MetricsConfig``). Everything it reads lives on the event loop, so it runs there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from importlib import resources

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nostr_imagegen.service.metrics.observer import ServiceMetrics

__all__ = ["OpsServer"]

logger = logging.getLogger(__name__)

_MAX_REQUEST_BYTES = 8192
_READ_TIMEOUT_S = 10.0
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/status.js": ("status.js", "text/javascript; charset=utf-8"),
}
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class OpsServer:
    """Serves ``metrics`` at ``host:port`` (port 0: a free one; see ``url``)."""

    def __init__(self, metrics: ServiceMetrics, host: str = "127.0.0.1", port: int = 0) -> None:
        self.metrics = metrics
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    async def start(self) -> OpsServer:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        logger.info("metrics, health and status page at %s", self.url)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> OpsServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_REQUEST_BYTES:
                return
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            status, content_type, body = self._answer(method, path)
            head_only = method == "HEAD"
            writer.write(
                (
                    f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                    f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                    "Connection: close\r\n\r\n"
                ).encode("latin-1")
                + (b"" if head_only else body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except Exception:  # a bug: log it, keep serving
            logger.exception("the operations endpoint failed on a request")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET and HEAD\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        if path == "/healthz":
            healthy, problems = self.metrics.health()
            body = json.dumps({"healthy": healthy, "problems": problems}).encode()
            return (200 if healthy else 503), "application/json", body
        if path == "/status.json":
            return 200, "application/json", json.dumps(self.metrics.status()).encode()
        if path in _STATIC:
            name, content_type = _STATIC[path]
            page = resources.files("nostr_imagegen.service.statuspage").joinpath(name)
            return 200, content_type, page.read_bytes()
        return 404, "text/plain", b"not found\n"
