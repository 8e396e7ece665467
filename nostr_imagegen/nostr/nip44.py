"""NIP-44 version 2 encrypted payloads.

The wire form is padded base64 (RFC 4648) of::

    0x02 || nonce (32 bytes) || ChaCha20 ciphertext of the padded plaintext || HMAC-SHA256 (32)

    "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABee0G5VSK0/9YypIObAtDKfYEAjD35uVkHyB0F4Dw..."

- conversation key = HKDF-extract(SHA-256, salt=b"nip44-v2", IKM=raw ECDH x coordinate);
  the same from both sides: ``conversation_key(a, B) == conversation_key(b, A)``.
- message keys = HKDF-expand(SHA-256, PRK=conversation key, info=nonce, L=76), split into the
  ChaCha20 key (32), ChaCha20 nonce (12) and HMAC key (32).
- padded plaintext = big-endian u16 length || UTF-8 plaintext || zeros up to
  ``calc_padded_len(length)``.
- MAC = HMAC-SHA256(hmac key, nonce || ciphertext), compared in constant time before anything
  is decrypted.

Size rule (decided here; see docs/encryption.md): plaintexts are 1 to 65,535 bytes of UTF-8.
The official vector file (whose checksum NIP-44 quotes) lists 65,536 bytes and more as invalid
for encryption; the current NIP text later added a 6-byte "extended" length prefix for larger
plaintexts. We follow the vectors, on both sides: ``encrypt`` refuses a longer plaintext, and
``decrypt`` refuses a payload longer than ``MAX_PAYLOAD_CHARS`` (the longest 2-byte-prefix
payload) before any base64 decoding, and a zero length prefix after it. The reference
implementation (paulmillr/nip44) and nostr-tools use the same 0xffff cap, a job's encrypted
parameters or result links never need more, and it keeps hostile input to a small fixed bound.

Cryptography comes from the ``cryptography`` package (HMAC, HKDFExpand, ChaCha20); nothing is
hand-written. Every failure raises ``EncryptionError``.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from nostr_imagegen.errors import EncryptionError, KeyFormatError

if TYPE_CHECKING:
    from nostr_imagegen.nostr.keys import Keys

__all__ = [
    "MAX_PAYLOAD_CHARS",
    "MAX_PLAINTEXT_BYTES",
    "MIN_PAYLOAD_CHARS",
    "VERSION",
    "calc_padded_len",
    "conversation_key",
    "decrypt",
    "encrypt",
    "message_keys",
]

VERSION = 2
MIN_PLAINTEXT_BYTES = 1
MAX_PLAINTEXT_BYTES = 65535
_SALT = b"nip44-v2"
_NONCE_BYTES = 32
_MAC_BYTES = 32
_PREFIX_BYTES = 2
# version + nonce + (2-byte prefix + 32 padded bytes) + mac: the shortest payload.
_MIN_RAW_BYTES = 1 + _NONCE_BYTES + _PREFIX_BYTES + 32 + _MAC_BYTES  # 99
# The longest payload the size rule allows: 65,535 bytes pad to 65,536.
_MAX_RAW_BYTES = 1 + _NONCE_BYTES + _PREFIX_BYTES + 65536 + _MAC_BYTES  # 65,603
#: The spec's minimum base64 length of a payload (99 bytes encode to 132 characters).
MIN_PAYLOAD_CHARS = 132
#: The longest payload accepted (65,603 bytes in base64), checked before decoding.
MAX_PAYLOAD_CHARS = 4 * ((_MAX_RAW_BYTES + 2) // 3)  # 87,472


def calc_padded_len(unpadded_len: int) -> int:
    """Padded length for a plaintext of ``unpadded_len`` bytes (at least 32, then by chunks).

    >>> [calc_padded_len(n) for n in (1, 32, 33, 257, 1020)]
    [32, 32, 64, 320, 1024]
    """
    if unpadded_len < 1:
        raise EncryptionError(f"NIP-44: cannot pad a length of {unpadded_len}")
    if unpadded_len <= 32:
        return 32
    # 1 << (floor(log2(n - 1)) + 1) in integer arithmetic.
    next_power = 1 << (unpadded_len - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((unpadded_len - 1) // chunk + 1)


def conversation_key(keys: Keys, peer_pubkey: str) -> bytes:
    """The 32-byte key shared by ``keys`` and ``peer_pubkey`` (64 hex or npub)."""
    try:
        shared_x = keys.shared_x(peer_pubkey)
    except KeyFormatError as exc:
        raise EncryptionError(f"NIP-44: peer public key is invalid: {exc}") from exc
    # HKDF-extract is HMAC(salt, IKM) (RFC 5869 section 2.2).
    extract = hmac.HMAC(_SALT, hashes.SHA256())
    extract.update(shared_x)
    return extract.finalize()


def message_keys(conversation_key: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    """``(chacha_key, chacha_nonce, hmac_key)`` (32, 12 and 32 bytes) for one message."""
    if len(conversation_key) != 32:
        raise EncryptionError(
            f"NIP-44: conversation key must be 32 bytes, got {len(conversation_key)}"
        )
    if len(nonce) != _NONCE_BYTES:
        raise EncryptionError(f"NIP-44: nonce must be {_NONCE_BYTES} bytes, got {len(nonce)}")
    okm = HKDFExpand(hashes.SHA256(), 76, nonce).derive(conversation_key)
    return okm[:32], okm[32:44], okm[44:76]


def _chacha20(key: bytes, nonce12: bytes, data: bytes) -> bytes:
    # cryptography's ChaCha20 takes a 16-byte nonce: the 32-bit little-endian block counter
    # (0, as RFC 8439 encryption starts) followed by the 96-bit nonce.
    cipher = Cipher(algorithms.ChaCha20(key, b"\x00\x00\x00\x00" + nonce12), mode=None)
    encryptor = cipher.encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _mac(hmac_key: bytes, nonce: bytes, ciphertext: bytes) -> hmac.HMAC:
    mac = hmac.HMAC(hmac_key, hashes.SHA256())
    mac.update(nonce)
    mac.update(ciphertext)
    return mac


def _pad(data: bytes) -> bytes:
    n = len(data)
    if not MIN_PLAINTEXT_BYTES <= n <= MAX_PLAINTEXT_BYTES:
        raise EncryptionError(
            f"NIP-44: plaintext must be {MIN_PLAINTEXT_BYTES} to {MAX_PLAINTEXT_BYTES} bytes "
            f"of UTF-8, got {n}"
        )
    return n.to_bytes(_PREFIX_BYTES, "big") + data + bytes(calc_padded_len(n) - n)


def _unpad(padded: bytes) -> bytes:
    n = int.from_bytes(padded[:_PREFIX_BYTES], "big")
    if n == 0:
        raise EncryptionError(
            "NIP-44: invalid padding: a zero length prefix (the extended prefix for plaintexts "
            f"over {MAX_PLAINTEXT_BYTES} bytes is not supported)"
        )
    if len(padded) != _PREFIX_BYTES + calc_padded_len(n):
        raise EncryptionError(
            f"NIP-44: invalid padding: {len(padded)} padded bytes do not fit a length of {n}"
        )
    return padded[_PREFIX_BYTES : _PREFIX_BYTES + n]


def encrypt(plaintext: str, conversation_key: bytes, *, nonce: bytes | None = None) -> str:
    """Encrypt ``plaintext`` (1 to 65,535 bytes of UTF-8) into a NIP-44 v2 payload.

    ``nonce`` is for known-answer tests only; leave it out so a fresh random nonce is used.
    """
    if not isinstance(plaintext, str):
        raise EncryptionError("NIP-44: plaintext must be a str")
    if len(plaintext) > MAX_PLAINTEXT_BYTES:  # too long whatever its encoding: do not encode it
        raise EncryptionError(
            f"NIP-44: plaintext must be {MIN_PLAINTEXT_BYTES} to {MAX_PLAINTEXT_BYTES} bytes "
            f"of UTF-8, got {len(plaintext)} characters"
        )
    if nonce is None:
        nonce = os.urandom(_NONCE_BYTES)
    chacha_key, chacha_nonce, hmac_key = message_keys(conversation_key, nonce)
    ciphertext = _chacha20(chacha_key, chacha_nonce, _pad(plaintext.encode("utf-8")))
    mac = _mac(hmac_key, nonce, ciphertext).finalize()
    return base64.b64encode(bytes([VERSION]) + nonce + ciphertext + mac).decode("ascii")


def _decode_payload(payload: str) -> tuple[bytes, bytes, bytes]:
    if not isinstance(payload, str):
        raise EncryptionError("NIP-44: payload must be a str")
    if payload.startswith("#"):
        raise EncryptionError("NIP-44: unsupported encryption version (non-base64 '#' flag)")
    if len(payload) < MIN_PAYLOAD_CHARS:
        raise EncryptionError(
            f"NIP-44: invalid payload length: {len(payload)} characters, "
            f"at least {MIN_PAYLOAD_CHARS} expected"
        )
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise EncryptionError(
            f"NIP-44: invalid payload length: {len(payload)} characters, at most "
            f"{MAX_PAYLOAD_CHARS} accepted (plaintexts are limited to {MAX_PLAINTEXT_BYTES} bytes)"
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EncryptionError("NIP-44: payload is not valid base64") from exc
    if len(data) < _MIN_RAW_BYTES:
        raise EncryptionError(
            f"NIP-44: invalid payload length: {len(data)} decoded bytes, "
            f"at least {_MIN_RAW_BYTES} expected"
        )
    if data[0] != VERSION:
        raise EncryptionError(f"NIP-44: unsupported encryption version {data[0]}")
    return data[1 : 1 + _NONCE_BYTES], data[1 + _NONCE_BYTES : -_MAC_BYTES], data[-_MAC_BYTES:]


def decrypt(payload: str, conversation_key: bytes) -> str:
    """Check the MAC of a NIP-44 v2 payload, decrypt it and return the plaintext."""
    nonce, ciphertext, mac = _decode_payload(payload)
    chacha_key, chacha_nonce, hmac_key = message_keys(conversation_key, nonce)
    try:
        _mac(hmac_key, nonce, ciphertext).verify(mac)  # constant-time comparison
    except InvalidSignature:
        raise EncryptionError(
            "NIP-44: invalid MAC (wrong key, or the payload was altered)"
        ) from None
    data = _unpad(_chacha20(chacha_key, chacha_nonce, ciphertext))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EncryptionError("NIP-44: decrypted plaintext is not UTF-8") from None
