"""The sans-I/O relay session, driven frame by frame without sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nostr_imagegen.errors import EventError, MessageError
from nostr_imagegen.nostr.event import Event, UnsignedEvent, parse_event, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.nostr.session import (
    AuthChallenge,
    AuthResult,
    EndOfStoredEvents,
    EventReceived,
    Notice,
    PublishAcked,
    RelaySession,
    SubscriptionClosed,
)

URL = "wss://relay.example.com"
AUTHOR = Keys.generate()
DVM = Keys.generate()


def make_event(content: str = "hi", kind: int = 1, at: int = 1_700_000_000) -> Event:
    return sign_event(UnsignedEvent(kind=kind, content=content), AUTHOR, created_at=at)


def frame(*parts: Any) -> str:
    return json.dumps(list(parts))


def ok(event_id: str, accepted: bool, message: str = "") -> str:
    return frame("OK", event_id, accepted, message)


def event_frame(sub_id: str, event: Event) -> str:
    return frame("EVENT", sub_id, event.to_dict())


def sent_auth_event(frames: list[str]) -> Event:
    """The one AUTH event among outgoing frames."""
    auths = [json.loads(f) for f in frames if json.loads(f)[0] == "AUTH"]
    assert len(auths) == 1, frames
    return parse_event(auths[0][1])


# -- publishing --------------------------------------------------------------------------------


def test_publish_returns_event_frame_and_ok_resolves_it() -> None:
    session = RelaySession(URL)
    event = make_event()
    sent = json.loads(session.publish(event))
    assert sent == ["EVENT", event.to_dict()]
    assert session.pending_event_ids == (event.id,)
    assert session.receive(ok(event.id, True)) == [PublishAcked(event.id, True, "", None)]
    assert not session.pending_event_ids


def test_rejection_carries_message_and_prefix() -> None:
    session = RelaySession(URL)
    event = make_event()
    session.publish(event)
    assert session.receive(ok(event.id, False, "blocked: no")) == [
        PublishAcked(event.id, False, "blocked: no", "blocked")
    ]


def test_duplicate_refusal_counts_as_accepted() -> None:
    session = RelaySession(URL)
    event = make_event()
    session.publish(event)
    [acked] = session.receive(ok(event.id, False, "duplicate: already have it"))
    assert acked == PublishAcked(event.id, True, "duplicate: already have it", "duplicate")


def test_ok_with_empty_id_resolves_the_oldest_pending_publish() -> None:
    session = RelaySession(URL)
    first, second = make_event("one"), make_event("two")
    session.publish(first)
    session.publish(second)
    assert session.receive(ok("", False, "invalid: bad signature")) == [
        PublishAcked(first.id, False, "invalid: bad signature", "invalid")
    ]
    assert session.receive(ok("garbage", False, "error: x")) == [
        PublishAcked(second.id, False, "error: x", "error")
    ]
    # Nothing left to match: ignored, not an error.
    assert session.receive(ok("", False, "invalid: late")) == []


def test_ok_for_an_unknown_well_formed_id_is_ignored() -> None:
    session = RelaySession(URL)
    event = make_event()
    session.publish(event)
    assert session.receive(ok("c" * 64, True)) == []
    assert session.pending_event_ids == (event.id,)


def test_abandon_stops_waiting() -> None:
    session = RelaySession(URL)
    event = make_event()
    session.publish(event)
    session.abandon(event.id)
    assert session.receive(ok(event.id, True)) == []


def test_pending_publishes_are_bounded() -> None:
    session = RelaySession(URL, max_pending=1)
    session.publish(make_event("one"))
    session.publish(make_event("one"))  # the same event again is fine
    with pytest.raises(MessageError):
        session.publish(make_event("two"))


def test_connection_lost_returns_unacknowledged_publishes() -> None:
    session = RelaySession(URL)
    first, second = make_event("one"), make_event("two")
    session.publish(first)
    session.publish(second)
    session.receive(ok(first.id, True))
    assert session.connection_lost() == [second]
    assert session.pending_event_ids == ()


def test_ok_id_with_a_trailing_newline_is_malformed_and_matched_to_the_oldest() -> None:
    # A well-formed id we are not waiting for is ignored; "<id>\n" is not well-formed, so it
    # is read as the id-less answer some relays give, for the oldest publish waiting.
    session = RelaySession(URL)
    event = make_event()
    session.publish(event)
    assert session.receive(ok("c" * 64, True)) == []
    assert session.receive(ok(event.id + "\n", False, "invalid: x")) == [
        PublishAcked(event.id, False, "invalid: x", "invalid")
    ]


@pytest.mark.parametrize(
    "url", ["https://relay.example.com", "relay.example.com", "wss://", "wss://r .example", ""]
)
def test_session_needs_a_relay_url(url: str) -> None:
    with pytest.raises(MessageError, match="relay url"):
        RelaySession(url)


# -- NIP-42 ------------------------------------------------------------------------------------


def test_challenge_is_answered_with_a_signed_auth_event() -> None:
    session = RelaySession(URL, keys=DVM)
    assert session.receive(frame("AUTH", "chal-1")) == [AuthChallenge("chal-1")]
    auth = sent_auth_event(session.take_outgoing())
    assert auth.kind == 22242
    assert auth.pubkey == DVM.public_key
    assert auth.tag_value("relay") == URL
    assert auth.tag_value("challenge") == "chal-1"
    assert session.take_outgoing() == []
    assert session.receive(ok(auth.id, True)) == [AuthResult(auth.id, True, "")]
    assert session.authenticated


def test_without_keys_a_challenge_is_only_reported() -> None:
    session = RelaySession(URL)
    assert session.receive(frame("AUTH", "chal")) == [AuthChallenge("chal")]
    assert session.take_outgoing() == []
    assert session.challenge == "chal"
    with pytest.raises(MessageError):
        session.auth()
    # An explicit auth with keys works.
    assert json.loads(session.auth(DVM))[0] == "AUTH"


def test_auth_required_publish_is_retried_once_after_auth_ok() -> None:
    session = RelaySession(URL, keys=DVM)
    event = make_event()
    session.publish(event)
    # The relay refuses, then challenges (the order some relays use).
    assert session.receive(ok(event.id, False, "auth-required: who are you")) == []
    assert session.take_outgoing() == []  # no challenge yet, nothing to sign
    session.receive(frame("AUTH", "chal"))
    auth = sent_auth_event(session.take_outgoing())
    assert session.receive(ok(auth.id, True)) == [AuthResult(auth.id, True, "")]
    assert session.take_outgoing() == [
        json.dumps(["EVENT", event.to_dict()], separators=(",", ":"))
    ]
    assert session.receive(ok(event.id, True)) == [PublishAcked(event.id, True, "", None)]


def test_auth_required_after_challenge_uses_the_auth_already_sent() -> None:
    session = RelaySession(URL, keys=DVM)
    session.receive(frame("AUTH", "chal"))
    auth = sent_auth_event(session.take_outgoing())
    event = make_event()
    session.publish(event)
    assert session.receive(ok(event.id, False, "auth-required: wait")) == []
    assert session.take_outgoing() == []  # AUTH for this challenge is already on its way
    session.receive(ok(auth.id, True))
    [resent] = session.take_outgoing()
    assert json.loads(resent) == ["EVENT", event.to_dict()]


def test_auth_required_when_already_authenticated_resends_at_once() -> None:
    session = RelaySession(URL, keys=DVM)
    session.receive(frame("AUTH", "chal"))
    session.receive(ok(sent_auth_event(session.take_outgoing()).id, True))
    event = make_event()
    session.publish(event)
    assert session.receive(ok(event.id, False, "auth-required: again")) == []
    [resent] = session.take_outgoing()
    assert json.loads(resent)[0] == "EVENT"


def test_second_auth_required_is_final() -> None:
    session = RelaySession(URL, keys=DVM)
    session.receive(frame("AUTH", "chal"))
    session.receive(ok(sent_auth_event(session.take_outgoing()).id, True))
    event = make_event()
    session.publish(event)
    session.receive(ok(event.id, False, "auth-required: one"))
    session.take_outgoing()
    assert session.receive(ok(event.id, False, "auth-required: two")) == [
        PublishAcked(event.id, False, "auth-required: two", "auth-required")
    ]


def test_rejected_auth_fails_the_waiting_publish() -> None:
    session = RelaySession(URL, keys=DVM)
    event = make_event()
    session.publish(event)
    session.receive(frame("AUTH", "chal"))
    auth = sent_auth_event(session.take_outgoing())
    session.receive(ok(event.id, False, "auth-required: log in"))
    assert session.receive(ok(auth.id, False, "restricted: not on the list")) == [
        AuthResult(auth.id, False, "restricted: not on the list"),
        PublishAcked(event.id, False, "auth-required: log in", "auth-required"),
    ]
    assert not session.authenticated


def test_auth_required_without_keys_is_final() -> None:
    session = RelaySession(URL)
    event = make_event()
    session.publish(event)
    assert session.receive(ok(event.id, False, "auth-required: no")) == [
        PublishAcked(event.id, False, "auth-required: no", "auth-required")
    ]


def test_empty_id_ok_skips_publishes_waiting_for_auth() -> None:
    session = RelaySession(URL, keys=DVM)
    first, second = make_event("one"), make_event("two")
    session.publish(first)
    session.publish(second)
    session.receive(ok(first.id, False, "auth-required: x"))
    assert session.receive(ok("", False, "invalid: y")) == [
        PublishAcked(second.id, False, "invalid: y", "invalid")
    ]


def test_challenges_are_signed_a_bounded_number_of_times() -> None:
    session = RelaySession(URL, keys=DVM)
    signed = 0
    for n in range(50):
        session.receive(frame("AUTH", f"chal-{n}"))
        signed += len(session.take_outgoing())
    assert 1 <= signed <= 8


def test_auth_state_is_per_connection() -> None:
    session = RelaySession(URL, keys=DVM)
    session.receive(frame("AUTH", "chal"))
    session.receive(ok(sent_auth_event(session.take_outgoing()).id, True))
    assert session.authenticated
    session.connection_lost()
    assert not session.authenticated
    assert session.challenge is None


def test_relay_url_must_be_a_websocket_url() -> None:
    with pytest.raises(MessageError):
        RelaySession("https://relay.example.com")


# -- subscriptions -----------------------------------------------------------------------------


def test_events_are_delivered_once_per_subscription() -> None:
    session = RelaySession(URL)
    session.subscribe("a", [Filter(kinds=[1])])
    session.subscribe("b", Filter(kinds=[1]))
    event = make_event()
    assert session.receive(event_frame("a", event)) == [EventReceived("a", event)]
    assert session.receive(event_frame("a", event)) == []
    assert session.receive(event_frame("b", event)) == [EventReceived("b", event)]


def test_events_for_unknown_subscriptions_or_not_matching_are_dropped() -> None:
    session = RelaySession(URL)
    session.subscribe("jobs", [Filter(kinds=[5100])])
    assert session.receive(event_frame("other", make_event(kind=5100))) == []
    assert session.receive(event_frame("jobs", make_event(kind=1))) == []
    wanted = make_event(kind=5100)
    assert session.receive(event_frame("jobs", wanted)) == [EventReceived("jobs", wanted)]


def test_unsubscribe_returns_close_and_drops_later_events() -> None:
    session = RelaySession(URL)
    session.subscribe("s", [Filter(kinds=[1])])
    assert json.loads(session.unsubscribe("s")) == ["CLOSE", "s"]
    assert session.receive(event_frame("s", make_event())) == []
    assert session.subscription_ids == ()


def test_eose_is_reported_once() -> None:
    session = RelaySession(URL)
    session.subscribe("s", [Filter(kinds=[1])])
    assert session.receive(frame("EOSE", "s")) == [EndOfStoredEvents("s")]
    assert session.receive(frame("EOSE", "s")) == []
    assert session.receive(frame("EOSE", "unknown")) == []


def test_seen_ids_are_bounded_lru() -> None:
    session = RelaySession(URL, max_seen_per_subscription=2)
    session.subscribe("s", [Filter(kinds=[1])])
    one, two, three = make_event("1"), make_event("2"), make_event("3")
    for event in (one, two, three):
        assert session.receive(event_frame("s", event)) == [EventReceived("s", event)]
    # `one` fell out of the window; `three` is still remembered.
    assert session.receive(event_frame("s", three)) == []
    assert session.receive(event_frame("s", one)) == [EventReceived("s", one)]


def test_subscriptions_are_bounded() -> None:
    session = RelaySession(URL, max_subscriptions=1)
    session.subscribe("a", [Filter(kinds=[1])])
    session.subscribe("a", [Filter(kinds=[2])])  # replacing is fine
    with pytest.raises(MessageError):
        session.subscribe("b", [Filter(kinds=[1])])


def test_closed_is_reported_and_stops_delivery() -> None:
    session = RelaySession(URL)
    session.subscribe("s", [Filter(kinds=[1])])
    assert session.receive(frame("CLOSED", "s", "error: shutting down idle subscription")) == [
        SubscriptionClosed("s", "error: shutting down idle subscription", "error")
    ]
    assert not session.is_open("s")
    assert session.receive(event_frame("s", make_event())) == []
    # The caller may ask again; the subscription is still known.
    assert json.loads(session.resubscribe("s"))[:2] == ["REQ", "s"]
    assert session.is_open("s")


def test_closed_auth_required_authenticates_and_requests_again() -> None:
    session = RelaySession(URL, keys=DVM)
    session.subscribe("dms", [Filter(kinds=[4])])
    session.receive(frame("AUTH", "chal"))
    auth = sent_auth_event(session.take_outgoing())
    assert session.receive(frame("CLOSED", "dms", "auth-required: log in")) == []
    session.receive(ok(auth.id, True))
    [req] = session.take_outgoing()
    assert json.loads(req) == ["REQ", "dms", {"kinds": [4]}]
    # A second auth-required is final.
    assert session.receive(frame("CLOSED", "dms", "auth-required: still no")) == [
        SubscriptionClosed("dms", "auth-required: still no", "auth-required")
    ]


def test_closed_auth_required_without_keys_is_final() -> None:
    session = RelaySession(URL)
    session.subscribe("dms", [Filter(kinds=[4])])
    [closed] = session.receive(frame("CLOSED", "dms", "auth-required: log in"))
    assert closed == SubscriptionClosed("dms", "auth-required: log in", "auth-required")


def test_notice_is_reported() -> None:
    assert RelaySession(URL).receive(frame("NOTICE", "hello")) == [Notice("hello")]


# -- reconnection ------------------------------------------------------------------------------


def test_connection_made_requests_every_subscription() -> None:
    session = RelaySession(URL)
    session.subscribe("a", [Filter(kinds=[1], since=500)])
    session.subscribe("b", [Filter(kinds=[2])])
    frames = [json.loads(f) for f in session.connection_made(now=10_000)]
    assert frames == [["REQ", "a", {"kinds": [1], "since": 500}], ["REQ", "b", {"kinds": [2]}]]


def test_reconnect_asks_only_for_events_since_the_newest_seen_minus_slack() -> None:
    session = RelaySession(URL)
    session.subscribe("s", [Filter(kinds=[1], since=100), Filter(kinds=[1], since=5000)])
    session.receive(event_frame("s", make_event("old", at=1000)))
    session.receive(event_frame("s", make_event("new", at=2000)))
    session.connection_lost()
    [req] = [json.loads(f) for f in session.connection_made(now=10_000, slack_s=60)]
    # since moves up to 2000 - 60, but never below a filter's own since.
    assert req == ["REQ", "s", {"kinds": [1], "since": 1940}, {"kinds": [1], "since": 5000}]
    # Events already delivered before the reconnect are not delivered again.
    assert session.receive(event_frame("s", make_event("new", at=2000))) == []


def test_reconnect_since_is_capped_at_now() -> None:
    session = RelaySession(URL)
    session.subscribe("s", [Filter(kinds=[1])])
    session.receive(event_frame("s", make_event("future", at=9_000_000_000)))
    [req] = [json.loads(f) for f in session.connection_made(now=1_000_000, slack_s=30)]
    assert req[2]["since"] == 1_000_000 - 30


def test_replacing_filters_forgets_the_catch_up_point_but_not_seen_ids() -> None:
    session = RelaySession(URL)
    session.subscribe("s", [Filter(kinds=[1])])
    event = make_event(at=2000)
    session.receive(event_frame("s", event))
    session.subscribe("s", [Filter(kinds=[1], since=10)])
    [req] = [json.loads(f) for f in session.connection_made()]
    assert req == ["REQ", "s", {"kinds": [1], "since": 10}]
    assert session.receive(event_frame("s", event)) == []


# -- malformed input ---------------------------------------------------------------------------


def test_malformed_frames_raise_and_leave_the_session_usable() -> None:
    session = RelaySession(URL)
    session.subscribe("s", [Filter(kinds=[1])])
    event = make_event()
    session.publish(event)
    with pytest.raises(MessageError):
        session.receive("not json")
    forged = event.to_dict()
    forged["content"] = "forged"
    with pytest.raises(EventError):
        session.receive(frame("EVENT", "s", forged))
    with pytest.raises(MessageError):
        session.receive(frame("EVENT", "s", make_event().to_dict(), "extra"))
    assert session.receive(ok(event.id, True)) == [PublishAcked(event.id, True, "", None)]
    assert session.receive(event_frame("s", event)) == [EventReceived("s", event)]


def test_frame_size_limit_applies() -> None:
    session = RelaySession(URL, max_frame_bytes=100)
    with pytest.raises(MessageError):
        session.receive(frame("NOTICE", "x" * 200))


def test_repr_shows_no_secrets() -> None:
    session = RelaySession(URL, keys=DVM)
    assert DVM.secret_hex() not in repr(session)
