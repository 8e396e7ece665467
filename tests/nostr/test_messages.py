"""Relay wire messages: encoders, the strict decoder and filters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nostr_imagegen.errors import EventError, InvalidEventId, InvalidSignature, MessageError
from nostr_imagegen.nostr.event import Event, UnsignedEvent, parse_event, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.messages import (
    KNOWN_PREFIXES,
    MAX_FRAME_BYTES,
    Filter,
    RelayAuth,
    RelayClosed,
    RelayEose,
    RelayEvent,
    RelayNotice,
    RelayOk,
    decode_relay_message,
    encode_auth,
    encode_close,
    encode_event,
    encode_req,
    split_prefix,
)

KEYS = Keys.generate()
HEX_A = "a" * 64
HEX_B = "b" * 64


def make_event(
    kind: int = 1,
    content: str = "hi",
    tags: tuple[tuple[str, ...], ...] = (),
    at: int = 1_700_000_000,
) -> Event:
    return sign_event(UnsignedEvent(kind=kind, content=content, tags=tags), KEYS, created_at=at)


# -- encoders ----------------------------------------------------------------------------------


def test_encode_event_round_trips() -> None:
    event = make_event(content='quote " backslash \\ newline \n ünïcødé')
    frame = encode_event(event)
    data = json.loads(frame)
    assert data[0] == "EVENT"
    assert len(data) == 2
    assert parse_event(data[1]) == event
    assert "ünïcødé" in frame  # UTF-8 verbatim, not \\u escapes


def test_encode_req_carries_every_filter_in_wire_form() -> None:
    first = Filter(kinds=[5100], tags={"p": [HEX_A]}, since=10)
    second = Filter(ids=[HEX_B], limit=5)
    data = json.loads(encode_req("jobs", first, second))
    assert data == [
        "REQ",
        "jobs",
        {"kinds": [5100], "since": 10, "#p": [HEX_A]},
        {"ids": [HEX_B], "limit": 5},
    ]
    assert [Filter.from_dict(item) for item in data[2:]] == [first, second]


@pytest.mark.parametrize("bad_id", ["", "x" * 65, 7])
def test_encode_req_and_close_refuse_bad_subscription_ids(bad_id: Any) -> None:
    with pytest.raises(MessageError):
        encode_req(bad_id, Filter(kinds=[1]))
    with pytest.raises(MessageError):
        encode_close(bad_id)


def test_subscription_id_of_64_characters_is_allowed() -> None:
    assert json.loads(encode_close("s" * 64)) == ["CLOSE", "s" * 64]


def test_encode_req_needs_a_filter_object() -> None:
    with pytest.raises(MessageError):
        encode_req("s")
    with pytest.raises(MessageError):
        encode_req("s", {"kinds": [1]})  # type: ignore[arg-type]


def test_encode_auth_wants_kind_22242() -> None:
    auth = make_event(kind=22242, content="", tags=(("relay", "ws://r"), ("challenge", "c")))
    data = json.loads(encode_auth(auth))
    assert data[0] == "AUTH"
    assert parse_event(data[1]) == auth
    with pytest.raises(MessageError):
        encode_auth(make_event(kind=1))


# -- decoding each message type ----------------------------------------------------------------


def test_decode_event_verifies_and_returns_the_event() -> None:
    event = make_event()
    frame = json.dumps(["EVENT", "sub", event.to_dict()])
    assert decode_relay_message(frame) == RelayEvent("sub", event)
    assert decode_relay_message(frame.encode()) == RelayEvent("sub", event)


def test_decode_event_with_a_forged_signature_raises_event_error() -> None:
    wire = make_event().to_dict()
    wire["sig"] = make_event(content="other").sig
    frame = json.dumps(["EVENT", "sub", wire])
    with pytest.raises(InvalidSignature):
        decode_relay_message(frame)
    # Without verification the shape alone is checked.
    assert isinstance(decode_relay_message(frame, verify_events=False), RelayEvent)


def test_decode_event_with_tampered_content_raises_invalid_event_id() -> None:
    wire = make_event().to_dict()
    wire["content"] = "tampered"
    with pytest.raises(InvalidEventId):
        decode_relay_message(json.dumps(["EVENT", "sub", wire]))


@pytest.mark.parametrize("prefix", sorted(KNOWN_PREFIXES))
def test_decode_ok_reads_each_standard_prefix(prefix: str) -> None:
    frame = json.dumps(["OK", HEX_A, False, f"{prefix}: human words: more"])
    assert decode_relay_message(frame) == RelayOk(
        HEX_A, False, f"{prefix}: human words: more", prefix
    )


def test_decode_ok_variants_seen_on_real_relays() -> None:
    assert decode_relay_message('["OK","",false,"invalid: bad"]') == RelayOk(
        "", False, "invalid: bad", "invalid"
    )
    # NIP-20 era relays left the message out.
    assert decode_relay_message(f'["OK","{HEX_A}",true]') == RelayOk(HEX_A, True, "", None)
    assert decode_relay_message(f'["OK","{HEX_A}",true,""]') == RelayOk(HEX_A, True, "", None)
    assert decode_relay_message(f'["OK","{HEX_A}",false,"no prefix here"]').prefix is None  # type: ignore[union-attr]


def test_decode_eose_closed_notice_auth() -> None:
    assert decode_relay_message('["EOSE","s1"]') == RelayEose("s1")
    assert decode_relay_message('["CLOSED","s1","auth-required: log in"]') == RelayClosed(
        "s1", "auth-required: log in", "auth-required"
    )
    assert decode_relay_message('["CLOSED","s1"]') == RelayClosed("s1", "", None)
    assert decode_relay_message('["NOTICE","slow down"]') == RelayNotice("slow down")
    assert decode_relay_message('["AUTH","chal-123"]') == RelayAuth("chal-123")


def test_split_prefix() -> None:
    assert split_prefix("rate-limited: slow down") == "rate-limited"
    assert split_prefix("rejected: not allowed") == "rejected"
    assert split_prefix("Hello: capitalised is not machine-readable") is None
    assert split_prefix("no colon") is None
    assert split_prefix(": empty word") is None
    assert split_prefix("") is None


# -- malformed frames --------------------------------------------------------------------------

MALFORMED = [
    "",
    "not json",
    "{}",
    '{"0": "EVENT"}',
    "[]",
    "null",
    "42",
    '"EVENT"',
    "[1, 2]",
    '[null, "x"]',
    '["HELLO", "x"]',
    '["COUNT", "s", {"count": 1}]',
    '["EOSE"]',
    '["EOSE", "s", "extra"]',
    '["EOSE", 5]',
    '["NOTICE"]',
    '["NOTICE", null]',
    '["NOTICE", "a", "b"]',
    '["OK"]',
    '["OK", "id"]',
    '["OK", "id", "true", ""]',
    '["OK", "id", 1, ""]',
    '["OK", 5, true, ""]',
    '["OK", "id", true, 5]',
    '["OK", "id", true, "", "extra"]',
    '["CLOSED"]',
    '["CLOSED", 1, "x"]',
    '["CLOSED", "s", 1]',
    '["AUTH"]',
    '["AUTH", ""]',
    '["AUTH", {"kind": 22242}]',
    '["AUTH", "' + "c" * 1025 + '"]',
    '["EVENT", "s"]',
    '["EVENT", 1, {}]',
    '["NOTICE", NaN]',
    '["NOTICE", Infinity]',
    '["NOTICE", "\\ud800"]',
    "[" * 100_000 + "]" * 100_000,
    '["OK", "id", true, ""',
]


@pytest.mark.parametrize("frame", MALFORMED, ids=lambda f: f[:40])
def test_malformed_frames_raise_message_error(frame: str) -> None:
    with pytest.raises(MessageError):
        decode_relay_message(frame)


@pytest.mark.parametrize(
    "bad_event",
    [
        None,
        "string",
        [1, 2],
        {},
        {"id": "x"},
    ],
)
def test_bad_event_inside_event_frame_raises_event_error(bad_event: Any) -> None:
    with pytest.raises(EventError):
        decode_relay_message(json.dumps(["EVENT", "s", bad_event]))


def test_event_with_lone_surrogate_raises_event_error() -> None:
    wire = make_event().to_dict()
    frame = json.dumps(["EVENT", "s", wire]).replace('"hi"', '"\\ud800"')
    with pytest.raises(EventError):
        decode_relay_message(frame)


def test_invalid_utf8_bytes_raise_message_error() -> None:
    with pytest.raises(MessageError):
        decode_relay_message(b'["NOTICE","\xff\xfe"]')


def test_frame_size_is_bounded_in_bytes() -> None:
    limit = 1000
    pad = limit - len('["NOTICE",""]')
    at_limit = '["NOTICE","' + "x" * pad + '"]'
    assert len(at_limit.encode()) == limit
    assert decode_relay_message(at_limit, max_bytes=limit) == RelayNotice("x" * pad)
    assert decode_relay_message(at_limit.encode(), max_bytes=limit) == RelayNotice("x" * pad)
    with pytest.raises(MessageError, match="larger"):
        decode_relay_message(at_limit.replace("x", "xx", 1), max_bytes=limit)
    # Characters count as their UTF-8 bytes: 'é' is two bytes.
    with pytest.raises(MessageError, match="larger"):
        decode_relay_message(at_limit.replace("x", "é", 1), max_bytes=limit)
    with pytest.raises(MessageError, match="larger"):
        decode_relay_message('["NOTICE","' + "x" * MAX_FRAME_BYTES + '"]')


def test_non_text_frame_raises_message_error() -> None:
    with pytest.raises(MessageError):
        decode_relay_message(None)  # type: ignore[arg-type]


# -- hypothesis: nothing but our two errors ----------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
message_types = st.sampled_from(["EVENT", "OK", "EOSE", "CLOSED", "NOTICE", "AUTH", "COUNT", ""])
event_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from([HEX_A, "x", 1]) | st.text(max_size=3),
        "pubkey": st.sampled_from([KEYS.public_key, HEX_A, "0" * 64, "f" * 64]) | json_values,
        "created_at": st.integers(min_value=-5, max_value=2**60) | json_values,
        "kind": st.integers(min_value=-5, max_value=70_000) | json_values,
        "tags": st.lists(st.lists(st.text(max_size=5) | json_values, max_size=3), max_size=3)
        | json_values,
        "content": st.text(max_size=10) | json_values,
        "sig": st.sampled_from(["0" * 128, "f" * 128, make_event().sig]) | json_values,
    },
)


def _check_only_our_errors(frame: str | bytes) -> None:
    try:
        result = decode_relay_message(frame)
    except (MessageError, EventError):
        return
    assert isinstance(
        result, RelayEvent | RelayOk | RelayEose | RelayClosed | RelayNotice | RelayAuth
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_raises_only_message_or_event_error(value: Any) -> None:
    _check_only_our_errors(json.dumps(value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message_types, st.lists(json_values | event_like, max_size=4))
def test_typed_frames_with_random_parts_raise_only_our_errors(kind: str, rest: list[Any]) -> None:
    _check_only_our_errors(json.dumps([kind, *rest]))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=50) | st.binary(max_size=50))
def test_arbitrary_text_and_bytes_raise_only_our_errors(frame: str | bytes) -> None:
    _check_only_our_errors(frame)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["EVENT", "OK", "NOTICE", "AUTH"]), st.text(max_size=30))
def test_random_strings_in_frames_raise_only_our_errors(kind: str, text: str) -> None:
    # json.dumps escapes lone surrogates, which the decoder must still refuse cleanly.
    _check_only_our_errors(json.dumps([kind, text, text]))
    _check_only_our_errors(json.dumps([kind, text]))
    event = make_event().to_dict()
    event["content"] = text
    _check_only_our_errors(json.dumps(["EVENT", text, event]))


# -- filters -----------------------------------------------------------------------------------


def test_filter_wire_form_lists_only_given_conditions() -> None:
    f = Filter(
        ids=[HEX_A],
        authors=[HEX_B],
        kinds=[5100, 5101],
        since=1,
        until=2,
        limit=3,
        tags={"#e": [HEX_A], "t": ["art"]},
    )
    assert f.to_dict() == {
        "ids": [HEX_A],
        "authors": [HEX_B],
        "kinds": [5100, 5101],
        "since": 1,
        "until": 2,
        "limit": 3,
        "#e": [HEX_A],
        "#t": ["art"],
    }
    assert Filter().to_dict() == {}


def test_filter_equality_does_not_depend_on_tag_order_and_is_hashable() -> None:
    a = Filter(tags={"t": ["x"], "p": [HEX_A]})
    b = Filter(tags={"#p": [HEX_A], "#t": ["x"]})
    assert a == b
    assert hash(a) == hash(b)
    assert a.tag_values("p") == (HEX_A,)
    assert a.tag_values("e") is None


def test_filter_does_not_keep_a_reference_to_caller_lists() -> None:
    kinds = [1]
    f = Filter(kinds=kinds)
    kinds.append(2)
    assert f.kinds == (1,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kinds": []},
        {"kinds": ["1"]},
        {"kinds": [True]},
        {"kinds": [70_000]},
        {"kinds": [1.5]},
        {"ids": ["A" * 64]},
        {"ids": ["a" * 63]},
        {"authors": "a" * 64},
        {"since": -1},
        {"since": "1"},
        {"limit": -1},
        {"since": 10, "until": 5},
        {"tags": {"ab": ["x"]}},
        {"tags": {"#1": ["x"]}},
        {"tags": {"e": ["not hex"]}},
        {"tags": {"p": ["B" * 64]}},
        {"tags": {"t": []}},
        {"tags": {"t": [1]}},
        {"tags": {"t": "x"}},
        {"tags": {"t": ["x"], "#t": ["y"]}},
        {"kinds": range(1001)},
        # Whole-string matches: a trailing newline is not part of an id or a tag letter.
        {"tags": {"p": ["b" * 64 + "\n"]}},
        {"tags": {"e": ["b" * 64 + "\n"]}},
        {"tags": {"p\n": ["x"]}},
        {"ids": ["b" * 64 + "\n"]},
        {"authors": ["b" * 64 + "\n"]},
    ],
)
def test_invalid_filters_raise_message_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(MessageError):
        Filter(**kwargs)


@pytest.mark.parametrize(
    "wire",
    [
        {"kinds": [1], "search": "x"},
        {"kinds": "1"},
        {"kinds": None},
        {"#t": "x"},
        ["kinds"],
    ],
)
def test_invalid_wire_filters_raise_message_error(wire: Any) -> None:
    with pytest.raises(MessageError):
        Filter.from_dict(wire)


def test_filter_matches_like_a_relay() -> None:
    event = make_event(
        kind=5100,
        tags=(("p", HEX_A, "wss://hint"), ("t", "art", "second"), ("e", HEX_B)),
        at=100,
    )
    assert Filter().matches(event)
    assert Filter(kinds=[1, 5100]).matches(event)
    assert not Filter(kinds=[1]).matches(event)
    assert Filter(authors=[KEYS.public_key]).matches(event)
    assert not Filter(authors=[HEX_A]).matches(event)
    assert Filter(ids=[event.id]).matches(event)
    assert not Filter(ids=[HEX_A]).matches(event)
    assert Filter(since=100, until=100).matches(event)  # both bounds inclusive
    assert not Filter(since=101).matches(event)
    assert not Filter(until=99).matches(event)
    assert Filter(tags={"p": [HEX_A, HEX_B]}).matches(event)
    assert Filter(tags={"p": [HEX_A], "t": ["art"]}).matches(event)
    assert not Filter(tags={"p": [HEX_A], "t": ["music"]}).matches(event)
    # Only a tag's first value is indexed: a later value does not match.
    assert not Filter(tags={"t": ["second"]}).matches(event)
    # limit only shapes the initial query.
    assert Filter(limit=0).matches(event)


def test_with_since_moves_since_and_stays_valid() -> None:
    f = Filter(kinds=[1], since=10, until=50)
    assert f.with_since(20) == Filter(kinds=[1], since=20, until=50)
    assert f.with_since(99).since == 50  # clamped to until
    assert Filter(kinds=[1]).with_since(-5).since == 0
    assert f.since == 10  # the original is untouched
