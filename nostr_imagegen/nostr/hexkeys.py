"""One home for hex values: event ids, public keys, hashes and signatures as lowercase hex.

NIP-01 writes event ids and x-only public keys as 64 lowercase hex characters, and signatures
as 128::

    >>> is_hex64("ab" * 32)
    True
    >>> is_hex64("AB" * 32), is_hex64("ab" * 32 + "\\n"), is_hex64(None)
    (False, False, False)

Every check is a full match: ``re.match`` with ``^...$`` would let a trailing newline through.
Accept upper case on purpose by lowering first (``is_hex64(text.lower())``), as key parsers do.
``Hex64`` and ``Hex128`` are the same rules as pydantic field types.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

__all__ = ["HEX64_PATTERN", "HEX128_PATTERN", "Hex64", "Hex128", "is_hex64", "is_hex128"]

#: An event id, an x-only public key, a secret key or a sha256: 32 bytes as lowercase hex.
HEX64_PATTERN = "[0-9a-f]{64}"
#: A BIP-340 signature: 64 bytes as lowercase hex.
HEX128_PATTERN = "[0-9a-f]{128}"

_HEX64 = re.compile(HEX64_PATTERN)
_HEX128 = re.compile(HEX128_PATTERN)

# pydantic searches with its pattern, so these are anchored; its regex engine's `$` matches
# only at the very end (tests/nostr/test_hexkeys.py holds it to that).
Hex64 = Annotated[str, StringConstraints(pattern=f"^{HEX64_PATTERN}$")]
Hex128 = Annotated[str, StringConstraints(pattern=f"^{HEX128_PATTERN}$")]


def is_hex64(value: object) -> bool:
    """True for a str of exactly 64 lowercase hex characters."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def is_hex128(value: object) -> bool:
    """True for a str of exactly 128 lowercase hex characters."""
    return isinstance(value, str) and _HEX128.fullmatch(value) is not None
