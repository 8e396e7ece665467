"""NIP-42: the kind 22242 event that answers a relay's AUTH challenge."""

from __future__ import annotations

import time

import pytest

from nostr_imagegen.errors import EventError
from nostr_imagegen.nostr.event import parse_event, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.nip42 import MAX_CHALLENGE_CHARS, build_auth_event


def test_auth_event_wire_form_signs_and_verifies() -> None:
    keys = Keys.generate()
    template = build_auth_event("wss://relay.example.com/", "challengestringhere")
    assert template.created_at is None  # sign_event stamps the current time
    before = int(time.time())
    event = parse_event(sign_event(template, keys).to_json())
    assert event.kind == 22242
    assert event.content == ""
    assert event.pubkey == keys.public_key
    assert [list(tag) for tag in event.tags] == [
        ["relay", "wss://relay.example.com/"],
        ["challenge", "challengestringhere"],
    ]
    assert event.created_at >= before


def test_challenge_is_copied_verbatim() -> None:
    challenge = " odd challenge\twith spaces é " + "x" * (MAX_CHALLENGE_CHARS - 40)
    template = build_auth_event("ws://127.0.0.1:7777", challenge)
    assert template.tag_value("challenge") == challenge
    assert template.tag_value("relay") == "ws://127.0.0.1:7777"


@pytest.mark.parametrize(
    ("relay", "challenge", "match"),
    [
        ("https://relay.example.com", "c", "wss://"),
        ("relay.example.com", "c", "wss://"),
        ("wss://relay.example.com/ x", "c", "whitespace"),
        ("wss://" + "r" * 2100, "c", "longer than 2048"),
        ("wss://relay.example.com", "", "non-empty"),
        ("wss://relay.example.com", "c" * (MAX_CHALLENGE_CHARS + 1), "longer"),
    ],
)
def test_bad_relay_or_challenge_is_refused(relay: str, challenge: str, match: str) -> None:
    with pytest.raises(EventError, match=match):
        build_auth_event(relay, challenge)
