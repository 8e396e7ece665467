"""BIP-340 Schnorr signatures against the official bitcoin/bips test vectors."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
from coincurve import PublicKeyXOnly

from nostr_imagegen.errors import KeyFormatError
from nostr_imagegen.nostr.keys import Keys, normalize_public_key

OFFICIAL_SHA256 = "34c9d1d9c3a88d524bc80778540dc43f8306ec249a7485293063c376db851c2d"


@pytest.fixture(scope="module")
def rows(vectors_dir: Path) -> list[dict[str, str]]:
    path = vectors_dir / "bip340-test-vectors.csv"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == OFFICIAL_SHA256
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_signing_rows(rows: list[dict[str, str]]) -> None:
    """Every row with a secret key: our public key and, for 32-byte messages, our signature.

    Rows 15-18 sign messages of 0, 1, 17 and 100 bytes. ``Keys.sign_digest`` signs 32-byte
    event ids only (coincurve's signer takes nothing else), so for those rows the signature
    is checked by verification below instead of being reproduced.
    """
    signed = 0
    for row in rows:
        if not row["secret key"]:
            continue
        keys = Keys.from_hex(row["secret key"])
        assert keys.public_key == row["public key"].lower(), row["index"]
        message = bytes.fromhex(row["message"])
        if len(message) != 32:
            continue
        signature = keys.sign_digest(message, bytes.fromhex(row["aux_rand"]))
        assert signature.hex() == row["signature"].lower(), row["index"]
        signed += 1
    assert signed == 4  # rows 0-3


def _verifies(row: dict[str, str]) -> bool:
    try:
        key = PublicKeyXOnly(bytes.fromhex(row["public key"]))
    except ValueError:
        return False  # rows 5 and 14: not a valid x coordinate
    return bool(key.verify(bytes.fromhex(row["signature"]), bytes.fromhex(row["message"])))


def test_verification_rows(rows: list[dict[str, str]]) -> None:
    assert len(rows) == 19
    for row in rows:
        assert _verifies(row) is (row["verification result"] == "TRUE"), row["index"]


def test_invalid_public_keys_are_refused(rows: list[dict[str, str]]) -> None:
    bad = [row for row in rows if "public key" in row["comment"]]
    assert [row["index"] for row in bad] == ["5", "14"]
    for row in bad:
        with pytest.raises(KeyFormatError, match="not a point on secp256k1"):
            normalize_public_key(row["public key"])
        with pytest.raises(KeyFormatError):
            Keys.generate().shared_x(row["public key"])


def test_fresh_aux_rand_still_verifies() -> None:
    keys = Keys.generate()
    digest = hashlib.sha256(b"an event id").digest()
    first, second = keys.sign_digest(digest), keys.sign_digest(digest)
    assert first != second  # random aux data each time
    verifier = PublicKeyXOnly(bytes.fromhex(keys.public_key))
    assert verifier.verify(first, digest)
    assert verifier.verify(second, digest)
