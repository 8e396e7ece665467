"""NIP-19 bech32 entities: ``npub``, ``nsec`` and ``note`` (32-byte payloads).

    >>> npub_encode("3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d")
    'npub180cvv07tjdrrgpa0j7j7tmnyl2yr6yr7l8j4s3evf6u64th6gkwsyjh6w6'

Bech32 (BIP-173, not bech32m) with the NIP-19 prefixes. Strings are bounded in length so a
hostile input cannot make decoding slow.
"""

from __future__ import annotations

from nostr_imagegen.errors import Bech32Error

__all__ = [
    "decode",
    "encode",
    "note_encode",
    "npub_decode",
    "npub_encode",
    "nsec_decode",
    "nsec_encode",
]

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_INDEX = {c: i for i, c in enumerate(_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
# NIP-19 strings with TLV payloads can exceed BIP-173's 90 characters; 5,000 is ample.
_MAX_LENGTH = 5000


def _polymod(values: list[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            checksum ^= _GENERATOR[i] if ((top >> i) & 1) else 0
    return checksum


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    max_value = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & max_value)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & max_value):
        raise Bech32Error("bech32 payload has invalid padding")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Encode ``data`` as bech32 with the human-readable prefix ``hrp``."""
    words = _convert_bits(data, 8, 5, pad=True)
    values = _hrp_expand(hrp) + words
    polymod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words + checksum)


def decode(text: str) -> tuple[str, bytes]:
    """Decode a bech32 string into ``(hrp, data)``; raise ``Bech32Error`` when malformed."""
    if not isinstance(text, str):
        raise Bech32Error("bech32 value must be a string")
    if len(text) > _MAX_LENGTH:
        raise Bech32Error(f"bech32 string is longer than {_MAX_LENGTH} characters")
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("bech32 string mixes upper and lower case")
    text = text.lower()
    separator = text.rfind("1")
    if separator < 1 or separator + 7 > len(text):
        raise Bech32Error("bech32 string has no valid separator and checksum")
    hrp, rest = text[:separator], text[separator + 1 :]
    if any(ord(c) < 33 or ord(c) > 126 for c in hrp):
        raise Bech32Error("bech32 prefix has invalid characters")
    try:
        values = [_CHARSET_INDEX[c] for c in rest]
    except KeyError as exc:
        raise Bech32Error(f"bech32 string has invalid character {exc.args[0]!r}") from None
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise Bech32Error("bech32 checksum does not match")
    return hrp, bytes(_convert_bits(values[:-6], 5, 8, pad=False))


def _decode_32(text: str, expected_hrp: str) -> bytes:
    hrp, data = decode(text)
    if hrp != expected_hrp:
        raise Bech32Error(f"expected an {expected_hrp}, got prefix {hrp!r}")
    if len(data) != 32:
        raise Bech32Error(f"{expected_hrp} must hold 32 bytes, got {len(data)}")
    return data


def npub_encode(public_key_hex: str) -> str:
    """x-only public key (64 hex) -> ``npub1...``."""
    return encode("npub", bytes.fromhex(public_key_hex))


def npub_decode(npub: str) -> str:
    """``npub1...`` -> x-only public key as 64 lowercase hex."""
    return _decode_32(npub, "npub").hex()


def nsec_encode(secret_key_hex: str) -> str:
    """Secret key (64 hex) -> ``nsec1...``."""
    return encode("nsec", bytes.fromhex(secret_key_hex))


def nsec_decode(nsec: str) -> str:
    """``nsec1...`` -> secret key as 64 lowercase hex."""
    return _decode_32(nsec, "nsec").hex()


def note_encode(event_id_hex: str) -> str:
    """Event id (64 hex) -> ``note1...``."""
    return encode("note", bytes.fromhex(event_id_hex))
