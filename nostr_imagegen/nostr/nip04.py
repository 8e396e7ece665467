"""NIP-04 encrypted payloads (legacy): AES-256-CBC with PKCS#7 padding.

The wire form is the base64 ciphertext, then ``?iv=``, then the base64 16-byte IV::

    "zJxfaJ32rN5Dg1ODjOlEew==?iv=EV5bUjcc4OX2Km/zPp4ndQ=="

The AES key is the raw 32-byte x coordinate of the ECDH point ``our_secret * their_pubkey``
(``Keys.shared_x``), not a hash of it. NIP-04 has no authentication: a wrong key is noticed
only through bad padding or bytes that are not UTF-8, and not always. Prefer NIP-44.

Sizes are bounded: a plaintext over ``MAX_PLAINTEXT_BYTES`` is refused, and so is a payload
longer than ``MAX_PAYLOAD_CHARS`` before any base64 decoding. Every failure raises
``EncryptionError``.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from nostr_imagegen.errors import EncryptionError, KeyFormatError

if TYPE_CHECKING:
    from nostr_imagegen.nostr.keys import Keys

__all__ = ["IV_SEPARATOR", "MAX_PAYLOAD_CHARS", "MAX_PLAINTEXT_BYTES", "decrypt", "encrypt"]

IV_SEPARATOR = "?iv="
#: NIP-04 itself sets no limit; 256 KiB keeps a payload well inside one relay event.
MAX_PLAINTEXT_BYTES = 256 * 1024
_BLOCK_BYTES = 16


def _b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


# The longest ciphertext (PKCS#7 adds 1..16 bytes) in base64, the separator and the IV.
MAX_PAYLOAD_CHARS = (
    _b64_len((MAX_PLAINTEXT_BYTES // _BLOCK_BYTES + 1) * _BLOCK_BYTES)
    + len(IV_SEPARATOR)
    + _b64_len(_BLOCK_BYTES)
)


def _shared_key(keys: Keys, peer_pubkey: str) -> bytes:
    try:
        return keys.shared_x(peer_pubkey)
    except KeyFormatError as exc:
        raise EncryptionError(f"NIP-04: peer public key is invalid: {exc}") from exc


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EncryptionError(f"NIP-04: {what} is not valid base64") from exc


def encrypt(plaintext: str, keys: Keys, peer_pubkey: str, *, iv: bytes | None = None) -> str:
    """Encrypt ``plaintext`` from ``keys`` to ``peer_pubkey`` (64 hex or npub).

    ``iv`` is for known-answer tests only; leave it out so a fresh random IV is used.
    """
    if not isinstance(plaintext, str):
        raise EncryptionError("NIP-04: plaintext must be a str")
    # The character count first, so a huge string is refused without encoding it.
    data = plaintext.encode("utf-8") if len(plaintext) <= MAX_PLAINTEXT_BYTES else None
    if data is None or len(data) > MAX_PLAINTEXT_BYTES:
        raise EncryptionError(
            f"NIP-04: plaintext is more than the {MAX_PLAINTEXT_BYTES} bytes allowed"
        )
    if iv is None:
        iv = os.urandom(_BLOCK_BYTES)
    elif len(iv) != _BLOCK_BYTES:
        raise EncryptionError(f"NIP-04: iv must be {_BLOCK_BYTES} bytes, got {len(iv)}")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_shared_key(keys, peer_pubkey)), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return (
        base64.b64encode(ciphertext).decode("ascii")
        + IV_SEPARATOR
        + base64.b64encode(iv).decode("ascii")
    )


def decrypt(payload: str, keys: Keys, peer_pubkey: str) -> str:
    """Decrypt a ``<b64 ciphertext>?iv=<b64 iv>`` payload sent between ``keys`` and the peer."""
    if not isinstance(payload, str):
        raise EncryptionError("NIP-04: payload must be a str")
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise EncryptionError(f"NIP-04: payload is longer than {MAX_PAYLOAD_CHARS} characters")
    ciphertext_b64, separator, iv_b64 = payload.partition(IV_SEPARATOR)
    if not separator:
        raise EncryptionError("NIP-04: payload has no '?iv=' part")
    iv = _b64decode(iv_b64, "iv")
    if len(iv) != _BLOCK_BYTES:
        raise EncryptionError(f"NIP-04: iv must be {_BLOCK_BYTES} bytes, got {len(iv)}")
    ciphertext = _b64decode(ciphertext_b64, "ciphertext")
    if not ciphertext or len(ciphertext) % _BLOCK_BYTES:
        raise EncryptionError(
            f"NIP-04: ciphertext must be a non-empty multiple of {_BLOCK_BYTES} bytes, "
            f"got {len(ciphertext)}"
        )
    decryptor = Cipher(algorithms.AES(_shared_key(keys, peer_pubkey)), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        data = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise EncryptionError(
            "NIP-04: bad padding after decryption (wrong key or corrupted payload)"
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EncryptionError(
            "NIP-04: decrypted bytes are not UTF-8 (wrong key or corrupted payload)"
        ) from None
