"""A static file server for one folder (the local-folder image host's demo companion).

    with serve_folder(Path("out")) as server:       # http://127.0.0.1:<free port>
        host = LocalFolderHost(Path("out"), server.url)

Only ``GET`` and ``HEAD`` of plain files directly in the folder: names are ``[A-Za-z0-9_-]``
followed by ``[A-Za-z0-9_.-]`` (so no ``/``, no ``..``, no hidden or temporary files),
symbolic links are not followed, there is no directory listing, and other methods get 405.
Meant for 127.0.0.1; put a real web server in front for anything public.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

from nostr_imagegen.errors import ConfigError

__all__ = ["FolderServer", "serve_folder"]

logger = logging.getLogger(__name__)

_CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}

#: A plain file name directly in the folder: no separators, not hidden, bounded length.
_SERVABLE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")


class _FolderHandler(BaseHTTPRequestHandler):
    """GET/HEAD of plain files directly in one folder; no listing, no subfolders, no links."""

    folder: Path
    server_version = "nostr-imagegen"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def _not_allowed(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _status(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, *, send_body: bool) -> None:
        path = urlsplit(self.path).path
        name = unquote(path[1:]) if path.startswith("/") else ""
        if not _SERVABLE_NAME.fullmatch(name):
            self._status(404)
            return
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.folder / name, flags)
        except OSError:
            self._status(404)
            return
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a folder, a fifo, a device...
            os.close(fd)
            self._status(404)
            return
        with os.fdopen(fd, "rb") as handle:
            size = info.st_size
            extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            self.send_response(200)
            self.send_header(
                "Content-Type", _CONTENT_TYPES.get(extension, "application/octet-stream")
            )
            self.send_header("Content-Length", str(size))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Cache-Control", "public, max-age=31536000, immutable")
            self.end_headers()
            if send_body:
                while chunk := handle.read(64 * 1024):
                    self.wfile.write(chunk)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("folder server: " + format, *args)


class _IPv6HTTPServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class FolderServer:
    """A static file server for one folder, in a background thread.

    Use as a context manager, or call ``start()`` and ``close()``::

        with serve_folder(Path("out")) as server:
            host = LocalFolderHost(Path("out"), server.url)
    """

    def __init__(self, folder: Path | str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.folder = Path(folder).resolve()
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the folder server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43117``."""
        host = self._address[0]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    def start(self) -> FolderServer:
        if self._server is not None:
            return self
        if not self.folder.is_dir():
            raise ConfigError(f"cannot serve {self.folder}: not a folder")
        handler = type("FolderHandler", (_FolderHandler,), {"folder": self.folder})
        server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer
        if ":" in self._address[0]:
            server_class = _IPv6HTTPServer
        self._server = server_class(self._address, handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how quickly close() is noticed
            name="nostr-imagegen-folder-server",
            daemon=True,
        )
        self._thread.start()
        logger.info("serving %s at %s", self.folder, self.url)
        return self

    def close(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> FolderServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def serve_folder(folder: Path | str, host: str = "127.0.0.1", port: int = 0) -> FolderServer:
    """Start serving the files directly in ``folder`` (GET/HEAD only); returns the server."""
    return FolderServer(folder, host, port).start()
