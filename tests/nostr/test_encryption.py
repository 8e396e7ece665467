"""Scheme detection and the encrypt/decrypt facade used for encrypted job requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nostr_imagegen.errors import EncryptionError
from nostr_imagegen.nostr import nip44
from nostr_imagegen.nostr.encryption import EncryptionScheme, decrypt, detect_scheme, encrypt
from nostr_imagegen.nostr.keys import Keys

PARAMS = json.dumps([["i", "a purple ostrich", "text"], ["param", "ratio", "16:9"]])


@pytest.fixture(scope="module")
def vectors(vectors_dir: Path) -> dict[str, Any]:
    nostr: dict[str, Any] = json.loads((vectors_dir / "nostr-vectors.json").read_text())
    nip44_v2: dict[str, Any] = json.loads((vectors_dir / "nip44.vectors.json").read_text())["v2"]
    return {"nip04": nostr["nip04"], "nip44": nip44_v2}


def test_detects_official_payloads(vectors: dict[str, Any]) -> None:
    assert detect_scheme(vectors["nip04"]["ciphertext_from_sk1_to_pub_of_sk2"]) is (
        EncryptionScheme.NIP04
    )
    for case in vectors["nip44"]["valid"]["encrypt_decrypt"]:
        assert detect_scheme(case["payload"]) is EncryptionScheme.NIP44


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("#Atqupco0WyaOW2IGDKcshwxI9xO8HgD", "'#'"),
        ("AK1AjUvoYW3IS7C/BGRUoqEC7ayTfDUgnEPNeW", "unsupported NIP-44 version byte 0x00"),
        ("AQAAAAAA", "unsupported NIP-44 version byte 0x01"),
        ("not base64 at all", "neither NIP-04"),
        ("", "neither NIP-04"),
        ("Ag", "neither NIP-04"),
    ],
)
def test_detect_scheme_names_the_problem(payload: str, message: str) -> None:
    with pytest.raises(EncryptionError, match=message):
        detect_scheme(payload)


def test_detect_scheme_rejects_non_strings() -> None:
    with pytest.raises(EncryptionError, match="must be a str"):
        detect_scheme(b"AgAA")  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_round_trip_reports_the_scheme(scheme: EncryptionScheme) -> None:
    customer, provider = Keys.generate(), Keys.generate()
    payload = encrypt(PARAMS, customer, provider.public_key, scheme)
    assert detect_scheme(payload) is scheme
    assert decrypt(payload, provider, customer.public_key) == (PARAMS, scheme)


def test_nip44_is_the_default() -> None:
    customer, provider = Keys.generate(), Keys.generate()
    payload = encrypt(PARAMS, customer, provider.public_key)
    assert detect_scheme(payload) is EncryptionScheme.NIP44
    # And it is a real NIP-44 payload, readable with the NIP-44 module directly.
    assert nip44.decrypt(payload, nip44.conversation_key(provider, customer.public_key)) == PARAMS


def test_scheme_may_be_given_by_its_wire_value() -> None:
    customer, provider = Keys.generate(), Keys.generate()
    payload = encrypt(PARAMS, customer, provider.public_key, "nip04")  # type: ignore[arg-type]
    assert decrypt(payload, provider, customer.public_key)[1] is EncryptionScheme.NIP04
    with pytest.raises(EncryptionError, match="unknown encryption scheme"):
        encrypt(PARAMS, customer, provider.public_key, "nip99")  # type: ignore[arg-type]


def test_decrypts_official_payloads(vectors: dict[str, Any]) -> None:
    nip04_case = vectors["nip04"]
    sender, recipient = Keys.from_hex(nip04_case["sk1"]), Keys.from_hex(nip04_case["sk2"])
    assert decrypt(
        nip04_case["ciphertext_from_sk1_to_pub_of_sk2"], recipient, sender.public_key
    ) == (nip04_case["plaintext"], EncryptionScheme.NIP04)
    for case in vectors["nip44"]["valid"]["encrypt_decrypt"]:
        sender, recipient = Keys.from_hex(case["sec1"]), Keys.from_hex(case["sec2"])
        assert decrypt(case["payload"], recipient, sender.public_key) == (
            case["plaintext"],
            EncryptionScheme.NIP44,
        )


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_a_third_party_cannot_read_it(scheme: EncryptionScheme) -> None:
    customer = Keys.from_hex("0a" * 32)
    provider = Keys.from_hex("0b" * 32)
    eve = Keys.from_hex("0c" * 32)
    payload = encrypt(PARAMS, customer, provider.public_key, scheme)
    with pytest.raises(EncryptionError):
        decrypt(payload, eve, customer.public_key)


def test_invalid_peer_key_is_an_encryption_error() -> None:
    with pytest.raises(EncryptionError, match="peer public key is invalid"):
        encrypt(PARAMS, Keys.generate(), "00" * 32)
