"""NIP-44 v2 against the official vector file, the spec's size table, and its invariants."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import given, settings
from hypothesis import strategies as st

from nostr_imagegen.errors import EncryptionError, KeyFormatError
from nostr_imagegen.nostr import nip44
from nostr_imagegen.nostr.keys import Keys

# The checksum NIP-44 quotes for its vector file: proves we test against the official one.
OFFICIAL_SHA256 = "269ed0f69e4c192512cc779e78c555090cebc7c785b609e338a62afc3ce25040"
SPEC_44 = Path(__file__).resolve().parents[2] / ".." / "shared" / "specs" / "nips" / "44.md"


@pytest.fixture(scope="module")
def v2(vectors_dir: Path) -> dict[str, Any]:
    raw = (vectors_dir / "nip44.vectors.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == OFFICIAL_SHA256
    data: dict[str, Any] = json.loads(raw)["v2"]
    return data


def test_get_conversation_key_vectors(v2: dict[str, Any]) -> None:
    cases = v2["valid"]["get_conversation_key"]
    assert cases
    for case in cases:
        key = nip44.conversation_key(Keys.from_hex(case["sec1"]), case["pub2"])
        assert key.hex() == case["conversation_key"], case


def test_get_message_keys_vectors(v2: dict[str, Any]) -> None:
    section = v2["valid"]["get_message_keys"]
    conversation_key = bytes.fromhex(section["conversation_key"])
    assert section["keys"]
    for case in section["keys"]:
        chacha_key, chacha_nonce, hmac_key = nip44.message_keys(
            conversation_key, bytes.fromhex(case["nonce"])
        )
        assert chacha_key.hex() == case["chacha_key"], case
        assert chacha_nonce.hex() == case["chacha_nonce"], case
        assert hmac_key.hex() == case["hmac_key"], case


def test_calc_padded_len_vectors(v2: dict[str, Any]) -> None:
    for unpadded, padded in v2["valid"]["calc_padded_len"]:
        assert nip44.calc_padded_len(unpadded) == padded, (unpadded, padded)


def test_encrypt_decrypt_vectors(v2: dict[str, Any]) -> None:
    """The conversation the spec describes: A encrypts to B, B decrypts with A's key."""
    for case in v2["valid"]["encrypt_decrypt"]:
        sender, recipient = Keys.from_hex(case["sec1"]), Keys.from_hex(case["sec2"])
        key_ab = nip44.conversation_key(sender, recipient.public_key)
        assert key_ab.hex() == case["conversation_key"], case
        payload = nip44.encrypt(case["plaintext"], key_ab, nonce=bytes.fromhex(case["nonce"]))
        assert payload == case["payload"], case
        key_ba = nip44.conversation_key(recipient, sender.public_key)
        assert key_ba == key_ab
        assert nip44.decrypt(payload, key_ba) == case["plaintext"]


def test_encrypt_decrypt_long_msg_vectors(v2: dict[str, Any]) -> None:
    for case in v2["valid"]["encrypt_decrypt_long_msg"]:
        plaintext = case["pattern"] * case["repeat"]
        assert hashlib.sha256(plaintext.encode()).hexdigest() == case["plaintext_sha256"]
        key = bytes.fromhex(case["conversation_key"])
        payload = nip44.encrypt(plaintext, key, nonce=bytes.fromhex(case["nonce"]))
        assert hashlib.sha256(payload.encode()).hexdigest() == case["payload_sha256"], case
        assert nip44.decrypt(payload, key) == plaintext


def test_invalid_encrypt_msg_lengths(v2: dict[str, Any]) -> None:
    key = bytes(range(32))
    for length in v2["invalid"]["encrypt_msg_lengths"]:
        with pytest.raises(EncryptionError, match="plaintext must be 1 to 65535 bytes"):
            nip44.encrypt("a" * length, key)


def test_the_limit_counts_utf8_bytes() -> None:
    key = bytes(range(32))
    assert nip44.decrypt(nip44.encrypt("🦄" * 16383, key), key) == "🦄" * 16383  # 65,532 bytes
    with pytest.raises(EncryptionError, match="got 65536"):
        nip44.encrypt("🦄" * 16384, key)


def test_invalid_get_conversation_key_vectors(v2: dict[str, Any]) -> None:
    cases = v2["invalid"]["get_conversation_key"]
    assert cases
    for case in cases:
        if case["note"].startswith("sec1"):
            # An invalid secret never becomes a Keys object at all.
            with pytest.raises(KeyFormatError):
                Keys.from_hex(case["sec1"])
        else:
            keys = Keys.from_hex(case["sec1"])
            with pytest.raises(EncryptionError, match="peer public key is invalid"):
                nip44.conversation_key(keys, case["pub2"])


# A word from each vector's note that our error message must contain.
_NOTE_WORDS = {
    "unknown encryption version": "version",
    "invalid base64": "base64",
    "invalid MAC": "MAC",
    "invalid padding": "padding",
    "invalid payload length": "payload length",
}


def test_invalid_decrypt_vectors(v2: dict[str, Any]) -> None:
    cases = v2["invalid"]["decrypt"]
    assert cases
    for case in cases:
        word = next(w for note, w in _NOTE_WORDS.items() if case["note"].startswith(note))
        with pytest.raises(EncryptionError, match=re.escape(word)):
            nip44.decrypt(case["payload"], bytes.fromhex(case["conversation_key"]))


def _extended_prefix_payload(plaintext: bytes, key: bytes, nonce: bytes) -> str:
    """What the current NIP-44 text produces for 65,536+ bytes (6-byte length prefix)."""
    chacha_key, chacha_nonce, hmac_key = nip44.message_keys(key, nonce)
    n = len(plaintext)
    padded = b"\x00\x00" + n.to_bytes(4, "big") + plaintext + bytes(nip44.calc_padded_len(n) - n)
    encryptor = Cipher(algorithms.ChaCha20(chacha_key, bytes(4) + chacha_nonce), None).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.HMAC(hmac_key, hashes.SHA256())
    mac.update(nonce + ciphertext)
    return base64.b64encode(b"\x02" + nonce + ciphertext + mac.finalize()).decode()


def _spec_size_table() -> list[tuple[int, str, str]]:
    if not SPEC_44.is_file():
        pytest.skip(f"NIP-44 text not found at {SPEC_44}")
    row = re.compile(r"^\| (\d+) \| [^|]+ \| \d+ \| `([0-9a-f]{64})` \| `([0-9a-f]{64})` \|$")
    found = [row.match(line) for line in SPEC_44.read_text().splitlines()]
    return [(int(m[1]), m[2], m[3]) for m in found if m]


def test_size_rule_against_the_spec_table() -> None:
    """65,535 bytes encrypt exactly as the spec says; the extended prefix is refused."""
    table = _spec_size_table()
    assert [length for length, _, _ in table] == [65535, 65536, 65537]
    key = bytes.fromhex("c41c775356fd92eadc63ff5a0dc1da211b268cbea22316767095b2871ea1412d")
    nonce = (1).to_bytes(32, "big")
    for length, plaintext_sha, payload_sha in table:
        plaintext = "a" * length
        assert hashlib.sha256(plaintext.encode()).hexdigest() == plaintext_sha
        if length <= nip44.MAX_PLAINTEXT_BYTES:
            payload = nip44.encrypt(plaintext, key, nonce=nonce)
            assert hashlib.sha256(payload.encode()).hexdigest() == payload_sha
            assert nip44.decrypt(payload, key) == plaintext
            continue
        # A genuine extended-prefix payload (its checksum matches the spec's table) ...
        extended = _extended_prefix_payload(plaintext.encode(), key, nonce)
        assert hashlib.sha256(extended.encode()).hexdigest() == payload_sha
        # ... is refused on both sides, by size, before any base64 decoding.
        assert len(extended) > nip44.MAX_PAYLOAD_CHARS
        with pytest.raises(EncryptionError, match="plaintexts are limited to 65535 bytes"):
            nip44.decrypt(extended, key)
        with pytest.raises(EncryptionError, match="plaintext must be 1 to 65535 bytes"):
            nip44.encrypt(plaintext, key, nonce=nonce)


def test_zero_length_prefix_with_a_valid_mac_is_refused() -> None:
    """A small payload claiming the extended prefix fails on padding, after the MAC passed."""
    key, nonce = bytes(range(32)), bytes(32)
    payload = _extended_prefix_payload(b"short", key, nonce)  # prefix 00 00 00 00 00 05
    assert len(payload) <= nip44.MAX_PAYLOAD_CHARS
    with pytest.raises(EncryptionError, match="zero length prefix"):
        nip44.decrypt(payload, key)


def test_wrong_conversation_key_fails_on_the_mac() -> None:
    alice, bob, eve = Keys.generate(), Keys.generate(), Keys.generate()
    payload = nip44.encrypt("secret params", nip44.conversation_key(alice, bob.public_key))
    with pytest.raises(EncryptionError, match="invalid MAC"):
        nip44.decrypt(payload, nip44.conversation_key(eve, alice.public_key))


def test_fresh_nonce_each_time() -> None:
    key = bytes(range(32))
    first, second = nip44.encrypt("same", key), nip44.encrypt("same", key)
    assert first != second
    assert nip44.decrypt(first, key) == nip44.decrypt(second, key) == "same"


def test_oversized_payload_refused_before_decoding() -> None:
    with pytest.raises(EncryptionError, match="payload length"):
        nip44.decrypt("A" * (nip44.MAX_PAYLOAD_CHARS + 1), bytes(32))


@pytest.mark.parametrize(("key_len", "nonce_len"), [(31, 32), (33, 32), (32, 31), (32, 0)])
def test_key_and_nonce_lengths_checked(key_len: int, nonce_len: int) -> None:
    with pytest.raises(EncryptionError, match="must be 32 bytes"):
        nip44.encrypt("x", bytes(key_len), nonce=bytes(nonce_len))


def test_non_utf8_plaintext_after_decryption_is_refused() -> None:
    key, nonce = bytes(range(32)), bytes(32)
    chacha_key, chacha_nonce, hmac_key = nip44.message_keys(key, nonce)
    padded = (2).to_bytes(2, "big") + b"\xff\xfe" + bytes(30)
    encryptor = Cipher(algorithms.ChaCha20(chacha_key, bytes(4) + chacha_nonce), None).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.HMAC(hmac_key, hashes.SHA256())
    mac.update(nonce + ciphertext)
    payload = base64.b64encode(b"\x02" + nonce + ciphertext + mac.finalize()).decode()
    with pytest.raises(EncryptionError, match="not UTF-8"):
        nip44.decrypt(payload, key)


def test_calc_padded_len_rejects_zero() -> None:
    with pytest.raises(EncryptionError):
        nip44.calc_padded_len(0)


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=400))
def test_round_trip_any_text(text: str) -> None:
    key = hashlib.sha256(text.encode()).digest()
    assert nip44.decrypt(nip44.encrypt(text, key), key) == text


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=255))
def test_any_altered_byte_is_detected(position_seed: int, flip: int) -> None:
    key = bytes(range(32))
    raw = bytearray(base64.b64decode(nip44.encrypt("a job's encrypted params", key)))
    raw[position_seed % len(raw)] ^= flip
    with pytest.raises(EncryptionError):
        nip44.decrypt(base64.b64encode(bytes(raw)).decode(), key)
