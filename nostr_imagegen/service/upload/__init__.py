"""Hosting result images: one ``ImageHost`` interface, three implementations, one fallback.

    >>> hosts = [BlossomHost(["https://blossom.example"], keys),
    ...          Nip96Host("https://nostr.build", keys),
    ...          LocalFolderHost(Path("/srv/images"), "https://images.example.org")]
    >>> uploaded = await upload_with_fallback(hosts, png, mime="image/png", sha256=digest)
    >>> uploaded.url
    'https://blossom.example/9f86d0....png'

- ``BlossomHost`` (``blossom``): BUD-02 ``PUT /upload`` with the raw bytes and a BUD-11 kind
  24242 token (see ``httpauth``). The returned blob descriptor must carry our sha256. With
  several servers the first that accepts wins; the ones after it get a copy (a plain
  re-upload: BUD-04 ``/mirror`` is not among the texts we follow) whose failure is only logged.
- ``Nip96Host`` (``nip96``): NIP-96 multipart ``POST`` with NIP-98 auth (kind 27235); a server
  root is resolved to its ``api_url`` through ``/.well-known/nostr/nip96.json``.
- ``LocalFolderHost`` (``localfolder``): writes ``<sha256>.<ext>`` atomically into a folder
  that some web server publishes under ``base_url``; ``serve_folder`` (from ``folderserver``,
  re-exported here) is such a server for demos on 127.0.0.1.
- ``ImageHost``, ``UploadedImage`` and ``upload_with_fallback`` (``host``) are what they share;
  ``transport`` is the HTTP plumbing of the first two (URL checks, deadlines, bounded reads).

Every failure is an ``UploadError`` whose message names the host (never keys or tokens).
Responses are read with a size bound; every request has a deadline.
"""

from nostr_imagegen.service.upload.blossom import BlossomHost
from nostr_imagegen.service.upload.host import (
    IMAGE_EXTENSIONS,
    ImageHost,
    UploadedImage,
    upload_with_fallback,
)
from nostr_imagegen.service.upload.localfolder import FolderServer, LocalFolderHost, serve_folder
from nostr_imagegen.service.upload.nip96 import Nip96Host

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
