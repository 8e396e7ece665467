"""The socket-free parts of service.relay: URL checks, backoff, results, pool arguments."""

from __future__ import annotations

import pytest

from nostr_imagegen.errors import MessageError, RelayError
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.service.relay import (
    PublishResult,
    RelayOutcome,
    RelayPool,
    backoff_delay,
    normalize_relay_url,
    publish_once,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("wss://relay.damus.io", "wss://relay.damus.io"),
        ("WSS://Relay.Damus.IO/", "wss://relay.damus.io"),
        ("  wss://nos.lol  ", "wss://nos.lol"),
        ("ws://127.0.0.1:7777", "ws://127.0.0.1:7777"),
        ("wss://relay.example.com/path/", "wss://relay.example.com/path/"),
        ("wss://relay.example.com/?key=v#frag", "wss://relay.example.com?key=v"),
        ("ws://[::1]:8080/", "ws://[::1]:8080"),
    ],
)
def test_normalize_relay_url(raw: str, expected: str) -> None:
    assert normalize_relay_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "https://relay.example.com",
        "relay.example.com",
        "file:///etc/passwd",
        "wss://",
        "wss://user:pass@relay.example.com",
        "wss://relay.example.com:99999",
        "ws://[::1",
        "wss://relay.example.com/a b",
        "wss://relay.example.com/\x00",
        "wss://" + "a" * 3000 + ".com",
        None,
    ],
)
def test_bad_relay_urls_raise_relay_error(raw: object) -> None:
    with pytest.raises(RelayError):
        normalize_relay_url(raw)  # type: ignore[arg-type]


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    lowest = [backoff_delay(n, base_s=1.0, max_s=60.0, rng=lambda: 0.0) for n in range(10)]
    highest = [backoff_delay(n, base_s=1.0, max_s=60.0, rng=lambda: 0.999) for n in range(10)]
    assert lowest[:4] == [0.5, 1.0, 2.0, 4.0]
    assert lowest[-1] == 30.0  # half of the cap
    assert all(high <= 60.0 for high in highest)
    assert all(low < high for low, high in zip(lowest, highest, strict=True))
    # Huge attempt numbers do not overflow.
    assert backoff_delay(10_000, base_s=1.0, max_s=60.0) <= 60.0


def test_publish_result_views() -> None:
    result = PublishResult(
        "e" * 64,
        (
            RelayOutcome("wss://a.example", True),
            RelayOutcome("wss://b.example", False, "blocked: no", "blocked"),
            RelayOutcome("wss://c.example", False, "no OK", None, timed_out=True),
        ),
    )
    assert result.ok
    assert result.accepted_by == ("wss://a.example",)
    outcome = result.outcome("WSS://b.example/")
    assert outcome is not None
    assert outcome.prefix == "blocked"
    assert result.outcome("wss://d.example") is None
    assert not PublishResult("e" * 64, ()).ok


@pytest.mark.parametrize(
    ("urls", "options"),
    [
        ([], {}),
        ("wss://one.example", {}),
        (["https://one.example"], {}),
        (["wss://one.example"], {"max_frame_bytes": 10}),
        (["wss://one.example"], {"backoff_base_s": 0}),
        (["wss://one.example"], {"backoff_base_s": 10, "backoff_max_s": 1}),
    ],
)
def test_pool_arguments_are_checked(urls: object, options: dict[str, object]) -> None:
    with pytest.raises(RelayError):
        RelayPool(urls, **options)  # type: ignore[arg-type]


def test_pool_merges_duplicate_urls() -> None:
    pool = RelayPool(["wss://one.example/", "WSS://one.example", "wss://two.example"])
    assert pool.urls == ("wss://one.example", "wss://two.example")


async def test_pool_must_be_started_before_use() -> None:
    pool = RelayPool(["wss://one.example"])
    with pytest.raises(RelayError):
        await pool.wait_connected(timeout_s=0.1)
    with pytest.raises(RelayError):
        await anext(pool.events().__aiter__())


async def test_pool_subscribe_validates_before_storing() -> None:
    pool = RelayPool(["wss://one.example"])
    with pytest.raises(MessageError):
        await pool.subscribe("", [Filter(kinds=[1])])
    with pytest.raises(MessageError):
        await pool.subscribe("s", [])


async def test_publish_once_refuses_private_addresses_when_asked() -> None:
    from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
    from nostr_imagegen.nostr.keys import Keys

    event = sign_event(UnsignedEvent(kind=1, content="x"), Keys.generate())
    private = ("ws://127.0.0.1:1", "ws://10.0.0.1", "ws://[::1]:1", "ws://169.254.169.254")
    for url in (*private, "ws://localhost:1"):
        outcome = await publish_once(url, event, public_only=True, timeout_s=5)
        assert not outcome.accepted
        assert "public" in outcome.message
