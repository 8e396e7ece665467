"""Allow and deny lists of customers, read from files and read again when they change.

The file form: one public key a line, ``npub1...`` or 64 hex; ``#`` starts a comment::

    # paying customers
    npub1sg6plzptd64u62a878hep2kev88swjh3tw00gjsfl8f237lmu63q0uf63m
    3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d   # alice

The file is checked at most every ``check_interval_s`` (its modification time and size), so
editing it takes effect without a restart. A line that is not a key is logged and skipped;
a file that cannot be read keeps the last good list (logged), so a botched edit never opens
the service to everyone or shuts it to all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from nostr_imagegen.errors import ConfigError, KeyFormatError
from nostr_imagegen.nostr.keys import normalize_public_key

__all__ = ["KeyListFile", "read_key_list"]

logger = logging.getLogger(__name__)

#: Larger files are refused: a key list is not a database.
MAX_LIST_BYTES = 16 * 1024 * 1024


def read_key_list(path: Path) -> frozenset[str]:
    """The keys in ``path`` as 64 lowercase hex. Raises ``OSError`` if unreadable."""
    if path.stat().st_size > MAX_LIST_BYTES:
        raise OSError(f"{path} is larger than {MAX_LIST_BYTES} bytes")
    keys: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            keys.add(normalize_public_key(text))
        except KeyFormatError as exc:
            logger.warning("%s line %d is not a public key (%s); skipped", path, number, exc)
    return frozenset(keys)


class KeyListFile:
    """A key list file kept current: ``key in lists`` reads it again when it changed."""

    def __init__(
        self, path: Path, *, clock: Callable[[], float], check_interval_s: float = 1.0
    ) -> None:
        self.path = path
        self._clock = clock
        self._interval = check_interval_s
        try:
            self._stamp = self._stat()
            self._keys = read_key_list(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the key list {path}: {exc}") from None
        self._checked = clock()

    def _stat(self) -> tuple[int, int]:
        info = os.stat(self.path)
        return info.st_mtime_ns, info.st_size

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._checked < self._interval:
            return
        self._checked = now
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return
            self._keys = read_key_list(self.path)
            self._stamp = stamp
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("cannot read the key list %s (%s); keeping the last one", self.path, exc)
            return
        logger.info("key list %s read again: %d key(s)", self.path, len(self._keys))

    def __contains__(self, public_key: object) -> bool:
        self._refresh()
        return public_key in self._keys

    def __len__(self) -> int:
        self._refresh()
        return len(self._keys)
