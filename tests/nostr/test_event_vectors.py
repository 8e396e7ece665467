"""NIP-01 serialization, id and signature against a published event, and tampering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nostr_imagegen.errors import EventError, InvalidEventId, InvalidSignature
from nostr_imagegen.nostr.event import (
    UnsignedEvent,
    compute_event_id,
    parse_event,
    serialize_for_id,
    sign_event,
)
from nostr_imagegen.nostr.keys import Keys


@pytest.fixture(scope="module")
def vector(vectors_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors_dir / "nostr-vectors.json").read_text())
    return data["nip01_event"]  # type: ignore[no-any-return]


def test_serialization_and_id(vector: dict[str, Any]) -> None:
    ev = vector["event"]
    args = (ev["pubkey"], ev["created_at"], ev["kind"], ev["tags"], ev["content"])
    assert serialize_for_id(*args) == vector["serialized"].encode("utf-8")
    assert compute_event_id(*args) == ev["id"]


def test_parse_verifies_the_published_event(vector: dict[str, Any]) -> None:
    ev = vector["event"]
    for text in (json.dumps(ev), json.dumps(ev, indent=2), json.dumps(ev).encode()):
        event = parse_event(text)
        assert event.id == ev["id"]
        assert event.pubkey == ev["pubkey"]
        assert event.tags == tuple(tuple(tag) for tag in ev["tags"])
        assert event.tag_value("t") == "upload"
    assert parse_event(ev).to_dict() == ev  # from a dict too, and back


def test_to_json_is_accepted_again(vector: dict[str, Any]) -> None:
    event = parse_event(json.dumps(vector["event"]))
    assert parse_event(event.to_json()) == event


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("content", "Upload bitcoin.pdf!", InvalidEventId),
        ("created_at", 1708773960, InvalidEventId),
        ("tags", [["t", "upload"]], InvalidEventId),
        ("id", "00" * 32, InvalidEventId),
    ],
)
def test_tampering_is_detected(
    vector: dict[str, Any], field: str, value: Any, error: type[EventError]
) -> None:
    ev = {**vector["event"], field: value}
    with pytest.raises(error):
        parse_event(json.dumps(ev))


def test_altered_signature_is_detected(vector: dict[str, Any]) -> None:
    sig = vector["event"]["sig"]
    ev = {**vector["event"], "sig": sig[:-2] + ("00" if sig[-2:] != "00" else "01")}
    with pytest.raises(InvalidSignature):
        parse_event(json.dumps(ev))
    # Without verification only the shape is checked.
    assert parse_event(json.dumps(ev), verify=False).sig == ev["sig"]


def test_signed_events_verify_and_round_trip() -> None:
    keys = Keys.generate()
    template = UnsignedEvent(
        kind=6100,
        tags=(("e", "ab" * 32), ("p", keys.public_key), ("alt", "ünïcødé 🦄")),
        content="https://example.com/a.png",
    )
    event = sign_event(template, keys, created_at=1_700_000_000)
    assert event.pubkey == keys.public_key
    assert event.created_at == 1_700_000_000
    assert parse_event(event.to_json()) == event
    # The template is untouched and can be signed again.
    assert template.created_at is None


def test_pubkey_not_on_the_curve_is_an_invalid_signature(vector: dict[str, Any]) -> None:
    ev = vector["event"]
    bad_key = "ff" * 32  # x beyond the field size: no such point
    event_id = compute_event_id(bad_key, ev["created_at"], ev["kind"], ev["tags"], ev["content"])
    forged = {**ev, "pubkey": bad_key, "id": event_id}
    for _ in range(2):  # refused every time, never remembered as a good key
        with pytest.raises(InvalidSignature, match="invalid pubkey"):
            parse_event(json.dumps(forged))


def test_lone_surrogate_in_a_decoded_dict_is_an_event_error() -> None:
    """json.loads accepts "\\ud800"; the id cannot be computed from it, so it is refused."""
    wire = sign_event(UnsignedEvent(kind=1, content="x"), Keys.generate()).to_json()
    decoded = json.loads(wire.replace('"content":"x"', '"content":"\\ud800"'))
    with pytest.raises(EventError, match="not valid Unicode"):
        parse_event(decoded)
