"""Cancellation by NIP-09 deletion request (kind 5): only the request's own author cancels it."""

from __future__ import annotations

import pytest
from _answers_support import clear_job, signed

from nostr_imagegen.errors import EventError
from nostr_imagegen.imagejob.results import Cancellation, parse_cancellation
from nostr_imagegen.nostr.event import Event, UnsignedEvent
from nostr_imagegen.nostr.keys import Keys


def deletion(
    keys: Keys, tags: tuple[tuple[str, ...], ...], content: str = "", kind: int = 5
) -> Event:
    return signed(UnsignedEvent(kind=kind, tags=tags, content=content), keys)


def test_customer_deletion_cancels_the_job() -> None:
    customer = Keys.generate()
    job = clear_job(customer)
    event = deletion(customer, (("e", job.id), ("k", "5100")), "changed my mind")
    cancellation = parse_cancellation(event)
    assert cancellation == Cancellation(
        pubkey=customer.public_key,
        request_ids=(job.id,),
        reason="changed my mind",
        kinds=(5100,),
    )
    assert cancellation.cancels(job)
    assert cancellation.cancels(job.request)


def test_someone_else_cannot_cancel_the_job() -> None:
    job = clear_job(Keys.generate())
    stranger = parse_cancellation(deletion(Keys.generate(), (("e", job.id),)))
    assert not stranger.cancels(job)
    assert not stranger.cancels(job.request)


def test_deletion_of_another_event_does_not_cancel() -> None:
    customer = Keys.generate()
    job = clear_job(customer)
    other = parse_cancellation(deletion(customer, (("e", "ef" * 32),)))
    assert not other.cancels(job)


def test_several_ids_kept_in_order_without_duplicates_or_junk() -> None:
    customer = Keys.generate()
    first, second = "AB" * 32, "cd" * 32
    tags = (
        ("e", first),
        ("e", "not-an-id"),
        ("e",),
        ("a", "30023:" + "ab" * 32 + ":post"),
        ("e", second, "wss://relay.example"),
        ("e", first.lower()),
        ("k", "1"),
        ("k", "x"),
    )
    cancellation = parse_cancellation(deletion(customer, tags))
    assert cancellation.request_ids == (first.lower(), second)
    assert cancellation.kinds == (1,)
    assert cancellation.reason == ""


def test_k_tags_are_optional() -> None:
    customer = Keys.generate()
    job = clear_job(customer)
    cancellation = parse_cancellation(deletion(customer, (("e", job.id),)))
    assert cancellation.kinds == ()
    assert cancellation.cancels(job)


def test_reason_is_cleaned_and_bounded() -> None:
    customer = Keys.generate()
    event = deletion(customer, (("e", "ab" * 32),), "stop\n\x1b[2J" + "!" * 1000)
    reason = parse_cancellation(event).reason
    assert reason.startswith("stop [2J!")
    assert len(reason) == 280
    assert "\n" not in reason


@pytest.mark.parametrize(
    ("kind", "tags", "match"),
    [
        (1, (("e", "ab" * 32),), "not a deletion request"),
        (5100, (("e", "ab" * 32),), "not a deletion request"),
        (5, (), "no e tag"),
        (5, (("a", "30023:" + "ab" * 32 + ":x"), ("k", "30023")), "no e tag"),
        (5, (("e", "zz" * 32),), "no e tag"),
    ],
)
def test_refuses_what_is_not_a_usable_deletion(
    kind: int, tags: tuple[tuple[str, ...], ...], match: str
) -> None:
    with pytest.raises(EventError, match=match):
        parse_cancellation(deletion(Keys.generate(), tags, kind=kind))
