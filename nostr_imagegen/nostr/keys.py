"""secp256k1 key pairs for Nostr (BIP-340 x-only public keys), with a secret that never leaks.

    >>> keys = Keys.generate()
    >>> keys.public_key            # 64 lowercase hex: the `pubkey` of our events
    '...'
    >>> keys.npub                  # NIP-19: 'npub1...'
    >>> keys                       # the secret is never in a repr
    Keys(public_key='...')

The secret is exposed only by the explicit ``secret_hex()`` and ``nsec()`` methods.

``Keys`` is this library's ``Signer`` (nostr_imagegen.nostr.signer): it signs event templates
and encrypts for a peer with NIP-44 or NIP-04, all in this process.
"""

from __future__ import annotations

import os
import time
from typing import Any

from coincurve import PrivateKey, PublicKey, PublicKeyXOnly

from nostr_imagegen.errors import Bech32Error, KeyFormatError
from nostr_imagegen.nostr import nip04, nip19, nip44
from nostr_imagegen.nostr.event import Event, UnsignedEvent, compute_event_id
from nostr_imagegen.nostr.hexkeys import is_hex64

__all__ = ["Keys", "normalize_public_key"]


def normalize_public_key(value: str) -> str:
    """An x-only public key as 64 hex or an ``npub``, returned as 64 lowercase hex."""
    if not isinstance(value, str):
        raise KeyFormatError("public key must be a string")
    candidate = value.strip()
    if candidate.startswith("npub1"):
        try:
            return nip19.npub_decode(candidate)
        except Bech32Error as exc:
            raise KeyFormatError(f"invalid npub: {exc}") from exc
    candidate = candidate.lower()
    if not is_hex64(candidate):
        raise KeyFormatError("public key must be 64 hex characters or an npub")
    try:
        PublicKeyXOnly(bytes.fromhex(candidate))
    except ValueError as exc:
        raise KeyFormatError("public key is not a point on secp256k1") from exc
    return candidate


class Keys:
    """A Nostr key pair. Build with ``generate``, ``from_hex``, ``from_nsec`` or ``parse``."""

    __slots__ = ("_private", "public_key")

    def __init__(self, private_key: PrivateKey) -> None:
        self._private = private_key
        self.public_key: str = private_key.public_key_xonly.format().hex()

    @classmethod
    def generate(cls) -> Keys:
        """A new random key pair from the operating system's CSPRNG."""
        return cls(PrivateKey(os.urandom(32)))

    @classmethod
    def from_hex(cls, secret_hex: str) -> Keys:
        """Load from a 64-hex-character secret key."""
        candidate = secret_hex.strip().lower() if isinstance(secret_hex, str) else ""
        if not is_hex64(candidate):
            raise KeyFormatError("secret key must be 64 hex characters")
        try:
            return cls(PrivateKey(bytes.fromhex(candidate)))
        except ValueError as exc:
            raise KeyFormatError("secret key is out of range for secp256k1") from exc

    @classmethod
    def from_nsec(cls, nsec: str) -> Keys:
        """Load from a NIP-19 ``nsec1...`` string."""
        try:
            return cls.from_hex(nip19.nsec_decode(nsec.strip()))
        except Bech32Error as exc:
            raise KeyFormatError(f"invalid nsec: {exc}") from exc

    @classmethod
    def parse(cls, value: str) -> Keys:
        """Load from either an ``nsec1...`` or 64 hex characters."""
        if isinstance(value, str) and value.strip().startswith("nsec1"):
            return cls.from_nsec(value)
        return cls.from_hex(value)

    @property
    def npub(self) -> str:
        """The public key as NIP-19 ``npub1...``."""
        return nip19.npub_encode(self.public_key)

    def secret_hex(self) -> str:
        """The secret key as 64 hex. Only call this to store the key deliberately."""
        return self._private.secret.hex()

    def nsec(self) -> str:
        """The secret key as NIP-19 ``nsec1...``. Only call this to store the key deliberately."""
        return nip19.nsec_encode(self.secret_hex())

    def sign_digest(self, digest: bytes, aux_rand: bytes | None = None) -> bytes:
        """BIP-340 Schnorr signature (64 bytes) of a 32-byte digest."""
        return self._private.sign_schnorr(digest, os.urandom(32) if aux_rand is None else aux_rand)

    def sign_event(self, template: UnsignedEvent) -> Event:
        """The signed event of ``template`` (now, when its ``created_at`` is unset).

        Prefer the module function ``sign_event(template, keys)``, which takes any Signer.
        """
        when = template.created_at if template.created_at is not None else int(time.time())
        event_id = compute_event_id(
            self.public_key, when, template.kind, template.tags, template.content
        )
        return Event.model_construct(
            id=event_id,
            pubkey=self.public_key,
            created_at=when,
            kind=template.kind,
            tags=template.tags,
            content=template.content,
            sig=self.sign_digest(bytes.fromhex(event_id)).hex(),
        )

    def nip44_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
        """NIP-44 v2 encryption of ``plaintext`` to ``peer_pubkey`` (64 hex or npub)."""
        return nip44.encrypt(plaintext, nip44.conversation_key(self, peer_pubkey))

    def nip44_decrypt(self, peer_pubkey: str, payload: str) -> str:
        """Decrypt a NIP-44 v2 ``payload`` exchanged with ``peer_pubkey``."""
        return nip44.decrypt(payload, nip44.conversation_key(self, peer_pubkey))

    def nip04_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
        """NIP-04 encryption of ``plaintext`` to ``peer_pubkey`` (legacy; prefer NIP-44)."""
        return nip04.encrypt(plaintext, self, peer_pubkey)

    def nip04_decrypt(self, peer_pubkey: str, payload: str) -> str:
        """Decrypt a NIP-04 ``payload`` exchanged with ``peer_pubkey``."""
        return nip04.decrypt(payload, self, peer_pubkey)

    def shared_x(self, public_key_hex: str) -> bytes:
        """The raw x coordinate of ECDH(our secret, their x-only key), for NIP-04 and NIP-44.

        Not coincurve's ``ecdh()``, which hashes the point.
        """
        try:
            point = PublicKey(b"\x02" + bytes.fromhex(normalize_public_key(public_key_hex)))
        except ValueError as exc:
            raise KeyFormatError("public key is not a point on secp256k1") from exc
        return point.multiply(self._private.secret).format(compressed=True)[1:]

    def __repr__(self) -> str:
        return f"Keys(public_key={self.public_key!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keys) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __reduce__(self) -> str | tuple[Any, ...]:
        # Pickling would write the secret somewhere we do not control.
        raise TypeError("Keys cannot be pickled; store secret_hex() deliberately instead")
