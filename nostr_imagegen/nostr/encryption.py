"""Encrypted payloads (NIP-04 and NIP-44 v2), the scheme detected per payload.

    NIP-04:  "<base64 ciphertext>?iv=<base64 16-byte iv>"
    NIP-44:  base64 of 0x02 || nonce(32) || ciphertext || mac(32)

An encrypted job request may use either scheme; ``decrypt`` tells which one it found so the
answer can be encrypted the same way::

    plaintext, scheme = decrypt(request.content, provider_keys, request.pubkey)
    reply = encrypt(result_json, provider_keys, request.pubkey, scheme)

The keys may be ``Keys`` or any other ``Signer``: these helpers pick the scheme and call the
signer's ``nip44_*`` / ``nip04_*`` method. A payload is bounded in length before any signer
sees it, and whatever a foreign signer raises comes out as ``EncryptionError``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from enum import StrEnum

from nostr_imagegen.errors import EncryptionError, NostrImagegenError
from nostr_imagegen.nostr import nip04, nip44
from nostr_imagegen.nostr.signer import Signer

__all__ = ["EncryptionScheme", "decrypt", "detect_scheme", "encrypt"]


class EncryptionScheme(StrEnum):
    """How a payload is encrypted; an encrypted request is answered with the same scheme."""

    NIP04 = "nip04"
    NIP44 = "nip44"


def detect_scheme(payload: str) -> EncryptionScheme:
    """Which scheme ``payload`` uses: ``?iv=`` means NIP-04, base64 of 0x02... means NIP-44 v2.

    Raises ``EncryptionError`` naming the problem for anything else (an unsupported NIP-44
    version byte, the ``#`` future-encoding flag, text that is not base64).
    """
    if not isinstance(payload, str):
        raise EncryptionError("encrypted payload must be a str")
    if nip04.IV_SEPARATOR in payload:
        return EncryptionScheme.NIP04
    if payload.startswith("#"):
        raise EncryptionError("unsupported NIP-44 encoding: the '#' (non-base64) version flag")
    try:
        # Four base64 characters decode to three bytes; the first one is the version.
        head = base64.b64decode(payload[:4], validate=True)
    except (binascii.Error, ValueError):
        head = b""
    if not head:
        raise EncryptionError(
            "encrypted payload is neither NIP-04 (no '?iv=') nor NIP-44 (not base64)"
        )
    if head[0] != nip44.VERSION:
        raise EncryptionError(f"unsupported NIP-44 version byte 0x{head[0]:02x}")
    return EncryptionScheme.NIP44


def encrypt(
    plaintext: str,
    keys: Signer,
    peer_pubkey: str,
    scheme: EncryptionScheme = EncryptionScheme.NIP44,
) -> str:
    """Encrypt ``plaintext`` from ``keys`` to ``peer_pubkey``; NIP-44 unless ``scheme`` says."""
    try:
        chosen = EncryptionScheme(scheme)
    except ValueError:
        raise EncryptionError(f"unknown encryption scheme {scheme!r}") from None
    if not isinstance(plaintext, str):
        raise EncryptionError("plaintext must be a str")
    method = keys.nip04_encrypt if chosen is EncryptionScheme.NIP04 else keys.nip44_encrypt
    return _ask_signer(chosen, "encrypt", lambda: method(peer_pubkey, plaintext))


def decrypt(payload: str, keys: Signer, peer_pubkey: str) -> tuple[str, EncryptionScheme]:
    """Decrypt a payload exchanged with ``peer_pubkey``; return the plaintext and its scheme."""
    scheme = detect_scheme(payload)
    # Bounded here, so that no signer is handed an outsized payload from the network.
    if scheme is EncryptionScheme.NIP04:
        longest = nip04.MAX_PAYLOAD_CHARS
    else:
        longest = nip44.MAX_PAYLOAD_CHARS
    if len(payload) > longest:
        raise EncryptionError(f"{scheme.value}: payload is longer than {longest} characters")
    method = keys.nip04_decrypt if scheme is EncryptionScheme.NIP04 else keys.nip44_decrypt
    return _ask_signer(scheme, "decrypt", lambda: method(peer_pubkey, payload)), scheme


def _ask_signer(scheme: EncryptionScheme, verb: str, call: Callable[[], object]) -> str:
    """Run one of a signer's encrypt/decrypt methods: our own errors pass through, a foreign
    signer's own exception becomes ``EncryptionError`` (its cause kept), and its answer must
    be a str."""
    try:
        answer = call()
    except NostrImagegenError:
        raise
    except Exception as exc:  # a foreign signer's own error
        raise EncryptionError(f"{scheme.value}: the signer could not {verb}: {exc}") from exc
    if not isinstance(answer, str):
        raise EncryptionError(f"{scheme.value}: the signer returned {type(answer).__name__}")
    return answer
