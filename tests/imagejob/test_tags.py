"""Typed tag views: each valid tag round-trips to the same wire list; malformed ones say why."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from nostr_imagegen.errors import JobRejected
from nostr_imagegen.imagejob.model import Bid, InputType, JobInput
from nostr_imagegen.imagejob.tags import (
    BidTag,
    EncryptedTag,
    InputTag,
    OutputTag,
    ParamTag,
    ProviderTag,
    RelaysTag,
    clip_tag,
)

PUBKEY = "ab" * 32


Parser = Callable[
    [Sequence[str]],
    JobInput | ParamTag | OutputTag | BidTag | RelaysTag | ProviderTag | EncryptedTag,
]

VALID: list[tuple[Parser, list[str]]] = [
    (InputTag.parse, ["i", "A purple ostrich", "text"]),
    (InputTag.parse, ["i", "https://example.com/a.png", "url"]),
    (InputTag.parse, ["i", PUBKEY, "event", "wss://relay.example"]),
    (InputTag.parse, ["i", PUBKEY, "job", "", "style"]),
    (InputTag.parse, ["i", PUBKEY, "job", "wss://relay.example", "style"]),
    (InputTag.parse, ["i", "", "text", ""]),
    (ParamTag.parse, ["param", "ratio", "4:3"]),
    (ParamTag.parse, ["param", "ratio", "16", "9"]),
    (ParamTag.parse, ["param", "lora", "pixel-art", "0.8"]),
    (ParamTag.parse, ["param", "", ""]),
    (OutputTag.parse, ["output", "image/png"]),
    (OutputTag.parse, ["output", "image/svg+xml"]),
    (BidTag.parse, ["bid", "0"]),
    (BidTag.parse, ["bid", "10000"]),
    (BidTag.parse, ["bid", "1000", "5000"]),
    (BidTag.parse, ["bid", "7", "7"]),
    (RelaysTag.parse, ["relays", "wss://relay.example"]),
    (RelaysTag.parse, ["relays", "wss://a.example/path", "ws://127.0.0.1:7777", "WSS://B.example"]),
    (ProviderTag.parse, ["p", PUBKEY]),
    (ProviderTag.parse, ["p", PUBKEY, "wss://relay.example"]),
    (ProviderTag.parse, ["p", PUBKEY, ""]),
    (EncryptedTag.parse, ["encrypted"]),
]


@pytest.mark.parametrize(("parse", "tag"), VALID, ids=[" ".join(t)[:40] for _, t in VALID])
def test_valid_tags_round_trip(parse: Parser, tag: list[str]) -> None:
    view = parse(tag)
    assert list(view.to_tag()) == tag
    assert parse(tuple(tag)).to_tag() == tuple(tag)
    assert parse(list(view.to_tag())) == view


def test_input_tag_gives_the_model_input() -> None:
    assert InputTag.parse(["i", "x", "url", "wss://r", "m"]) == JobInput(
        data="x", type=InputType.URL, relay="wss://r", marker="m"
    )


def test_param_tag_values() -> None:
    param = ParamTag.parse(["param", "ratio", "16", "9"])
    assert (param.key, param.values, param.value) == ("ratio", ("16", "9"), "16")


def test_bid_tag_to_bid() -> None:
    assert BidTag.parse(["bid", "10"]).to_bid() == Bid(min_msats=10, max_msats=10)
    assert BidTag.parse(["bid", "10", "20"]).to_bid() == Bid(min_msats=10, max_msats=20)


INVALID: list[tuple[Parser, list[str], str]] = [
    (InputTag.parse, ["i", "x"], "takes 2 to 4 values"),
    (InputTag.parse, ["i", "x", "picture"], "not one of text, url, event, job"),
    (InputTag.parse, ["i", "x", "text", "", "", ""], "takes 2 to 4 values"),
    (InputTag.parse, ["param", "x", "text"], "expected a tag named 'i'"),
    (ParamTag.parse, ["param", "model"], "at least 2 values"),
    (ParamTag.parse, ["param"], "at least 2 values"),
    (OutputTag.parse, ["output"], "takes 1 value,"),
    (OutputTag.parse, ["output", "image/png", "image/jpeg"], "takes 1 value,"),
    (OutputTag.parse, ["output", "png"], "MIME type"),
    (OutputTag.parse, ["output", "image/png; q=1"], "MIME type"),
    (BidTag.parse, ["bid"], "takes 1 to 2 values"),
    (BidTag.parse, ["bid", "1", "2", "3"], "takes 1 to 2 values"),
    (BidTag.parse, ["bid", "-5"], "whole number"),
    (BidTag.parse, ["bid", "05"], "whole number"),
    (BidTag.parse, ["bid", "1e3"], "whole number"),
    (BidTag.parse, ["bid", " 5"], "whole number"),
    (BidTag.parse, ["bid", "9" * 19], "more millisats"),
    (BidTag.parse, ["bid", "20", "10"], "maximum below its minimum"),
    (RelaysTag.parse, ["relays"], "at least 1 value,"),
    (RelaysTag.parse, ["relays", "https://relay.example"], "wss://"),
    (RelaysTag.parse, ["relays", "wss://"], "no host"),
    (RelaysTag.parse, ["relays", "wss://a.example", "relay.example"], "wss://"),
    (ProviderTag.parse, ["p"], "takes 1 to 2 values"),
    (ProviderTag.parse, ["p", PUBKEY.upper()], "lowercase hex"),
    (ProviderTag.parse, ["p", PUBKEY[:-1]], "lowercase hex"),
    (ProviderTag.parse, ["p", PUBKEY, "wss://r", "petname"], "takes 1 to 2 values"),
    (EncryptedTag.parse, ["encrypted", ""], "takes no values"),
    (EncryptedTag.parse, [], "expected a tag named 'encrypted'"),
]


@pytest.mark.parametrize(
    ("parse", "tag", "message"), INVALID, ids=[" ".join(t)[:40] or "empty" for _, t, _ in INVALID]
)
def test_malformed_tags_are_rejected_with_the_tag(
    parse: Parser, tag: list[str], message: str
) -> None:
    with pytest.raises(JobRejected, match=message) as info:
        parse(tag)
    assert info.value.tag == tuple(tag)


def test_rejection_quotes_a_clipped_tag() -> None:
    huge = ["i", "x" * 10_000, "picture", *("y" for _ in range(20))]
    with pytest.raises(JobRejected) as info:
        InputTag.parse(huge)
    assert info.value.tag == clip_tag(huge)
    assert len(str(info.value)) < 1000


def test_clip_tag_keeps_small_tags_and_cuts_big_ones() -> None:
    assert clip_tag(["param", "ratio", "4:3"]) == ("param", "ratio", "4:3")
    clipped = clip_tag(["t", "x" * 500, *("y" for _ in range(10))])
    assert len(clipped) == 7
    assert clipped[-1] == "…"
    assert len(clipped[1]) == 80
    assert clipped[1].endswith("…")
