"""NIP-19 npub/nsec against the examples in the NIP text, and malformed strings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nostr_imagegen.errors import Bech32Error, KeyFormatError
from nostr_imagegen.nostr import nip19
from nostr_imagegen.nostr.keys import Keys, normalize_public_key


@pytest.fixture(scope="module")
def examples(vectors_dir: Path) -> list[dict[str, str]]:
    data = json.loads((vectors_dir / "nostr-vectors.json").read_text())
    decode: list[dict[str, str]] = data["nip19"]["decode"]
    return decode


def test_decode_examples(examples: list[dict[str, str]]) -> None:
    prefixes = set()
    for case in examples:
        prefix, data = nip19.decode(case["bech32"])
        prefixes.add(prefix)
        assert data.hex() == case["hex"]
        if prefix == "npub":
            assert nip19.npub_decode(case["bech32"]) == case["hex"]
            assert nip19.npub_encode(case["hex"]) == case["bech32"]
            assert normalize_public_key(case["bech32"]) == case["hex"]
        else:
            assert prefix == "nsec"
            assert nip19.nsec_decode(case["bech32"]) == case["hex"]
            assert nip19.nsec_encode(case["hex"]) == case["bech32"]
            keys = Keys.from_nsec(case["bech32"])
            assert keys.secret_hex() == case["hex"]
            assert keys.nsec() == case["bech32"]
            assert Keys.parse(case["bech32"]) == keys
    assert prefixes == {"npub", "nsec"}


def test_upper_case_is_accepted(examples: list[dict[str, str]]) -> None:
    case = examples[0]
    assert nip19.decode(case["bech32"].upper())[1].hex() == case["hex"]


def _flip_last_char(text: str) -> str:
    return text[:-1] + ("q" if text[-1] != "q" else "p")


def test_bad_checksum(examples: list[dict[str, str]]) -> None:
    npub = examples[0]["bech32"]
    with pytest.raises(Bech32Error, match="checksum"):
        nip19.npub_decode(_flip_last_char(npub))


def test_wrong_prefix(examples: list[dict[str, str]]) -> None:
    npub = next(case["bech32"] for case in examples if case["bech32"].startswith("npub"))
    nsec = next(case["bech32"] for case in examples if case["bech32"].startswith("nsec"))
    with pytest.raises(Bech32Error, match="expected an nsec"):
        nip19.nsec_decode(npub)
    with pytest.raises(Bech32Error, match="expected an npub"):
        nip19.npub_decode(nsec)
    # Through Keys the same problems are key-format errors.
    with pytest.raises(KeyFormatError, match="invalid nsec"):
        Keys.from_nsec(npub)
    with pytest.raises(KeyFormatError, match="invalid npub"):
        normalize_public_key("npub1" + nsec[5:])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("npub1Qqqq" + "q" * 60, "mixes upper and lower case"),
        ("npub1" + "b" * 60, "invalid character"),
        ("npub" + "q" * 60, "no valid separator"),
        ("1" + "q" * 60, "no valid separator"),
        ("npub1" + "q" * 5000, "longer than"),
    ],
)
def test_malformed_strings(text: str, message: str) -> None:
    with pytest.raises(Bech32Error, match=message):
        nip19.decode(text)


def test_payload_must_hold_32_bytes() -> None:
    short = nip19.encode("npub", bytes(20))
    with pytest.raises(Bech32Error, match="must hold 32 bytes, got 20"):
        nip19.npub_decode(short)


def test_note_encoding_round_trips() -> None:
    event_id = "ab" * 32
    assert nip19.decode(nip19.note_encode(event_id)) == ("note", bytes.fromhex(event_id))
