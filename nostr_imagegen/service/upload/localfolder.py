"""A local folder as an image host: ``<sha256>.<ext>`` written where a web server serves it.

    host = LocalFolderHost(Path("/srv/images"), "https://images.example.org")
    uploaded = await host.upload(png, mime="image/png", sha256=digest)
    uploaded.url        # 'https://images.example.org/9f86d0....png'

Some web server must publish the folder under ``base_url``; for demos and small setups
``serve_folder`` (``service.folderserver``, re-exported here with ``FolderServer``) is one,
on 127.0.0.1, GET/HEAD only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from pathlib import Path

from nostr_imagegen.errors import UploadError
from nostr_imagegen.service.folderserver import FolderServer, serve_folder
from nostr_imagegen.service.upload.host import IMAGE_EXTENSIONS, UploadedImage, check_blob
from nostr_imagegen.service.upload.transport import http_url

__all__ = ["FolderServer", "LocalFolderHost", "serve_folder"]

logger = logging.getLogger(__name__)


class LocalFolderHost:
    """Write ``<sha256>.<ext>`` into ``folder``, published by some web server at ``base_url``.

    The file name is built only from the verified sha256 and the MIME type's extension, so
    nothing a customer sends can name a file. Writes are atomic (temporary file in the same
    folder, fsync, ``os.replace``): a reader sees the whole image or nothing.
    """

    def __init__(self, folder: Path | str, base_url: str) -> None:
        self.folder = Path(folder)
        self.base_url = str(http_url(base_url, "base_url")).rstrip("/")
        self.name = "local folder"

    def __repr__(self) -> str:
        return f"LocalFolderHost(folder={str(self.folder)!r}, base_url={self.base_url!r})"

    async def upload(self, data: bytes, *, mime: str, sha256: str) -> UploadedImage:
        """Store the image and return its URL under ``base_url``."""
        check_blob(data, mime, sha256)
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
