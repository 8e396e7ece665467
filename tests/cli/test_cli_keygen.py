"""``nostr-imagegen keygen``: a fresh, self-consistent key pair as JSON on stdout."""

from __future__ import annotations

import json

import pytest

from nostr_imagegen.cli import main
from nostr_imagegen.nostr import nip19
from nostr_imagegen.nostr.keys import Keys


def keygen(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert main(["keygen"]) == 0
    out = capsys.readouterr().out
    document: dict[str, str] = json.loads(out)
    return document


def test_keygen_prints_a_consistent_key_pair(capsys: pytest.CaptureFixture[str]) -> None:
    document = keygen(capsys)
    assert set(document) == {"public_key", "npub", "secret_key", "nsec"}
    keys = Keys.from_nsec(document["nsec"])
    assert keys.public_key == document["public_key"]
    assert keys.secret_hex() == document["secret_key"]
    assert nip19.npub_decode(document["npub"]) == document["public_key"]


def test_keygen_makes_a_new_key_each_time(capsys: pytest.CaptureFixture[str]) -> None:
    assert keygen(capsys)["secret_key"] != keygen(capsys)["secret_key"]
