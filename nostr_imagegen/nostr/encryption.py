"""Encrypted payloads (NIP-04 and NIP-44 v2), the scheme detected per payload.

    NIP-04:  "<base64 ciphertext>?iv=<base64 16-byte iv>"
    NIP-44:  base64 of 0x02 || nonce(32) || ciphertext || mac(32)
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EncryptionScheme"]


class EncryptionScheme(StrEnum):
    """How a payload is encrypted; an encrypted request is answered with the same scheme."""

    NIP04 = "nip04"
    NIP44 = "nip44"
