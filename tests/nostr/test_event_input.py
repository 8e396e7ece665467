"""What parse_event takes (JSON text, bytes, a dict), what it refuses with TypeError, and the
size bound counted in UTF-8 bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nostr_imagegen.errors import EventError
from nostr_imagegen.nostr.event import (
    MAX_EVENT_JSON_BYTES,
    Event,
    UnsignedEvent,
    parse_event,
    sign_event,
)
from nostr_imagegen.nostr.keys import Keys

KEYS = Keys.generate()


def _event(content: str = "hi") -> Event:
    return sign_event(UnsignedEvent(kind=1, content=content), KEYS, created_at=1_700_000_000)


def test_json_text_bytes_and_dicts_are_taken() -> None:
    event = _event()
    text = event.to_json()
    assert parse_event(text) == event
    assert parse_event(text.encode()) == event
    assert parse_event(json.loads(text)) == event


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (None, "NoneType"),
        (42, "int"),
        (["EVENT", "sub", {}], "list"),
        (bytearray(b"{}"), "bytearray"),
        (_event(), "this Event is parsed already"),
    ],
)
def test_anything_else_is_a_type_error_naming_it(value: Any, named: str) -> None:
    with pytest.raises(TypeError, match=named):
        parse_event(value)


def test_another_librarys_event_object_is_a_type_error() -> None:
    nostr_sdk = pytest.importorskip("nostr_sdk")
    theirs = nostr_sdk.Event.from_json(_event().to_json())
    with pytest.raises(TypeError, match=r"nostr_sdk\.Event.*pass its JSON"):
        parse_event(theirs)
    assert parse_event(theirs.as_json()).id == theirs.id().to_hex()  # its JSON is taken


def _json_of_bytes(size: int) -> str:
    """A signed event's JSON of exactly ``size`` UTF-8 bytes, mostly two-byte characters."""
    overhead = len(_event("").to_json().encode())
    room = size - overhead
    content = "é" * (room // 2) + "x" * (room % 2)
    text = _event(content).to_json()
    assert len(text.encode()) == size
    assert len(text) < size  # fewer characters than bytes: counting characters was wrong
    return text


def test_size_limit_counts_utf8_bytes_at_the_boundary() -> None:
    at_limit = _json_of_bytes(MAX_EVENT_JSON_BYTES)
    assert parse_event(at_limit).content.startswith("éé")
    assert parse_event(at_limit.encode()).content.startswith("éé")
    over = _json_of_bytes(MAX_EVENT_JSON_BYTES + 1)
    assert len(over) <= MAX_EVENT_JSON_BYTES  # a character count would have let it in
    for data in (over, over.encode()):
        with pytest.raises(EventError, match=f"larger than {MAX_EVENT_JSON_BYTES} bytes"):
            parse_event(data)


def test_huge_text_is_refused_without_decoding() -> None:
    with pytest.raises(EventError, match="larger than"):
        parse_event("x" * (MAX_EVENT_JSON_BYTES + 1))


def test_ids_with_a_trailing_newline_are_malformed() -> None:
    data = _event().to_dict()
    for field in ("id", "pubkey"):
        bad = dict(data, **{field: data[field] + "\n"})
        with pytest.raises(EventError, match=field):
            parse_event(bad, verify=False)
