"""NIP-04 (AES-256-CBC) against the nostr-tools vector, and its failure modes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from nostr_imagegen.errors import EncryptionError
from nostr_imagegen.nostr import nip04
from nostr_imagegen.nostr.keys import Keys


@pytest.fixture(scope="module")
def vector(vectors_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors_dir / "nostr-vectors.json").read_text())["nip04"]
    return data


def test_decrypt_vector(vector: dict[str, Any]) -> None:
    sender, recipient = Keys.from_hex(vector["sk1"]), Keys.from_hex(vector["sk2"])
    payload = vector["ciphertext_from_sk1_to_pub_of_sk2"]
    assert nip04.decrypt(payload, recipient, sender.public_key) == vector["plaintext"]
    # The shared key is symmetric: the sender can read its own message too.
    assert nip04.decrypt(payload, sender, recipient.public_key) == vector["plaintext"]


def test_encrypt_with_the_vectors_iv_reproduces_it(vector: dict[str, Any]) -> None:
    sender, recipient = Keys.from_hex(vector["sk1"]), Keys.from_hex(vector["sk2"])
    payload = vector["ciphertext_from_sk1_to_pub_of_sk2"]
    iv = base64.b64decode(payload.split("?iv=")[1])
    assert nip04.encrypt(vector["plaintext"], sender, recipient.public_key, iv=iv) == payload


def test_round_trip_vector_keys(vector: dict[str, Any]) -> None:
    sender, recipient = Keys.from_hex(vector["sk1"]), Keys.from_hex(vector["sk2"])
    for text in ("", "nanana", "a" * 16, "ünïcødé 🦄 prompt", '[["param","model","sdxl"]]'):
        payload = nip04.encrypt(text, sender, recipient.public_key)
        ciphertext_b64, iv_b64 = payload.split("?iv=")
        assert len(base64.b64decode(iv_b64)) == 16
        assert len(base64.b64decode(ciphertext_b64)) % 16 == 0
        assert nip04.decrypt(payload, recipient, sender.public_key) == text


def test_peer_may_be_given_as_npub() -> None:
    alice, bob = Keys.generate(), Keys.generate()
    payload = nip04.encrypt("hi", alice, bob.npub)
    assert nip04.decrypt(payload, bob, alice.npub) == "hi"


def test_random_iv_each_time() -> None:
    alice, bob = Keys.generate(), Keys.generate()
    assert nip04.encrypt("same", alice, bob.public_key) != nip04.encrypt(
        "same", alice, bob.public_key
    )


def test_wrong_key_is_an_encryption_error() -> None:
    # Fixed keys: whether padding or UTF-8 decoding catches it is then deterministic.
    alice = Keys.from_hex("01" * 32)
    bob = Keys.from_hex("02" * 32)
    eve = Keys.from_hex("03" * 32)
    payload = nip04.encrypt("the real prompt", alice, bob.public_key, iv=bytes(16))
    with pytest.raises(EncryptionError, match="wrong key"):
        nip04.decrypt(payload, eve, alice.public_key)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("zJxfaJ32rN5Dg1ODjOlEew==", "no '\\?iv=' part"),
        ("zJxfaJ32rN5Dg1ODjOlEew==?iv=not base64!", "iv is not valid base64"),
        ("zJxfaJ32rN5Dg1ODjOlEew==?iv=AAAAAAAAAAAAAAAA", "iv must be 16 bytes, got 12"),
        ("zJxf*J32rN5Dg1ODjOlEew==?iv=EV5bUjcc4OX2Km/zPp4ndQ==", "ciphertext is not valid base64"),
        ("?iv=EV5bUjcc4OX2Km/zPp4ndQ==", "non-empty multiple of 16 bytes, got 0"),
        ("zJxfaJ32rN5Dg1ODjOlE?iv=EV5bUjcc4OX2Km/zPp4ndQ==", "multiple of 16 bytes, got 15"),
    ],
)
def test_malformed_payloads(vector: dict[str, Any], payload: str, message: str) -> None:
    recipient, sender = Keys.from_hex(vector["sk2"]), Keys.from_hex(vector["sk1"])
    with pytest.raises(EncryptionError, match=message):
        nip04.decrypt(payload, recipient, sender.public_key)


def test_bad_padding_is_reported() -> None:
    alice, bob = Keys.from_hex("01" * 32), Keys.from_hex("02" * 32)
    payload = nip04.encrypt("x" * 16, alice, bob.public_key, iv=bytes(16))
    ciphertext = base64.b64decode(payload.split("?iv=")[0])
    # Drop the final (all-padding) block: the last byte of what is left is plaintext "x".
    truncated = (
        base64.b64encode(ciphertext[:16]).decode() + "?iv=" + base64.b64encode(bytes(16)).decode()
    )
    with pytest.raises(EncryptionError, match="bad padding"):
        nip04.decrypt(truncated, bob, alice.public_key)


def test_sizes_are_bounded() -> None:
    alice, bob = Keys.generate(), Keys.generate()
    with pytest.raises(EncryptionError, match="more than the 262144 bytes allowed"):
        nip04.encrypt("a" * (nip04.MAX_PLAINTEXT_BYTES + 1), alice, bob.public_key)
    with pytest.raises(EncryptionError, match="more than the 262144 bytes allowed"):
        nip04.encrypt("é" * (nip04.MAX_PLAINTEXT_BYTES // 2 + 1), alice, bob.public_key)
    largest = nip04.encrypt("a" * nip04.MAX_PLAINTEXT_BYTES, alice, bob.public_key)
    assert len(largest) == nip04.MAX_PAYLOAD_CHARS
    assert nip04.decrypt(largest, bob, alice.public_key) == "a" * nip04.MAX_PLAINTEXT_BYTES
    with pytest.raises(EncryptionError, match="longer than"):
        nip04.decrypt("A" * nip04.MAX_PAYLOAD_CHARS + "?iv=", bob, alice.public_key)


def test_bad_iv_and_peer_on_encrypt() -> None:
    alice = Keys.generate()
    with pytest.raises(EncryptionError, match="iv must be 16 bytes"):
        nip04.encrypt("x", alice, alice.public_key, iv=bytes(12))
    with pytest.raises(EncryptionError, match="peer public key is invalid"):
        nip04.encrypt("x", alice, "ff" * 32)
