"""RelayPool and publish_once against real relays on 127.0.0.1 (nostr-relay, nostr-sdk)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.service.relay import RelayPool, publish_once

pytestmark = pytest.mark.integration

#: Generous bound so a hung test fails instead of hanging; never an assertion on speed.
WAIT_S = 30.0
FAST = {
    "backoff_base_s": 0.05,
    "backoff_max_s": 0.5,
    "connect_timeout_s": 5.0,
    "ping_interval_s": 5.0,
    "ping_timeout_s": 5.0,
}


def note(keys: Keys, content: str, kind: int = 1) -> Event:
    return sign_event(UnsignedEvent(kind=kind, content=content), keys)


class Receiver:
    """Reads ``pool.events()`` and keeps everything it saw."""

    def __init__(self, pool: RelayPool) -> None:
        self.iterator = pool.events().__aiter__()
        self.seen: list[tuple[str, Event]] = []

    async def until(self, predicate: Callable[[list[tuple[str, Event]]], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not predicate(self.seen):
                self.seen.append(await anext(self.iterator))

    async def event(self, event_id: str) -> tuple[str, Event]:
        await self.until(lambda seen: any(e.id == event_id for _, e in seen))
        return next(item for item in self.seen if item[1].id == event_id)

    def count(self, event_id: str) -> int:
        return sum(1 for _, e in self.seen if e.id == event_id)


@pytest.fixture
def author() -> Keys:
    return Keys.generate()


async def started_pool(urls: list[str], **options: Any) -> RelayPool:
    pool = RelayPool(urls, **{**FAST, **options})
    await pool.start()
    return pool


@pytest.fixture
async def pool_factory() -> AsyncIterator[Callable[..., Any]]:
    pools: list[RelayPool] = []

    async def make(urls: list[str], **options: Any) -> RelayPool:
        pool = await started_pool(urls, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.close()


async def test_publish_and_subscribe_round_trip(
    relay_url: str, author: Keys, pool_factory: Callable[..., Any]
) -> None:
    pool: RelayPool = await pool_factory([relay_url])
    await pool.subscribe("notes", [Filter(kinds=[1], authors=[author.public_key])], lookback_s=600)
    receiver = Receiver(pool)
    event = note(author, "hello relay")
    result = await pool.publish(event, timeout_s=WAIT_S)
    assert result.event_id == event.id
    assert result.ok
    assert result.accepted_by == (relay_url,)
    url, received = await receiver.event(event.id)
    assert (url, received) == (relay_url, event)


async def test_ok_tracking_duplicate_and_rejection_with_empty_id(
    relay_url: str, author: Keys, pool_factory: Callable[..., Any]
) -> None:
    pool: RelayPool = await pool_factory([relay_url])
    event = note(author, "once")
    first = await pool.publish(event, timeout_s=WAIT_S)
    assert first.outcomes[0].accepted
    # nostr-relay reports a duplicate as a failure; it still counts as stored.
    again = await pool.publish(event, timeout_s=WAIT_S)
    assert again.outcomes[0].accepted
    assert again.outcomes[0].prefix == "duplicate"
    # A forged signature: nostr-relay answers ["OK", "", false, "invalid: ..."] (empty id).
    forged = Event.model_construct(**{**note(author, "forged").model_dump(), "sig": event.sig})
    refused = await pool.publish(forged, timeout_s=WAIT_S)
    outcome = refused.outcomes[0]
    assert not outcome.accepted
    assert not outcome.timed_out
    assert outcome.prefix == "invalid"
    # The pool is still usable afterwards.
    assert (await pool.publish(note(author, "after"), timeout_s=WAIT_S)).ok


async def test_reconnects_and_resubscribes_after_the_relay_restarts(
    relay: Any, author: Keys, pool_factory: Callable[..., Any]
) -> None:
    pool: RelayPool = await pool_factory([relay.url])
    await pool.subscribe("notes", [Filter(kinds=[1], authors=[author.public_key])], lookback_s=600)
    receiver = Receiver(pool)
    before = note(author, "before the crash")
    assert (await publish_once(relay.url, before, timeout_s=WAIT_S)).accepted
    await receiver.event(before.id)

    await asyncio.to_thread(relay.stop, kill=True)
    async with asyncio.timeout(WAIT_S):
        while pool.status()[0].connected:
            await asyncio.sleep(0.02)
    await asyncio.to_thread(relay.start)

    # Published right after the restart, possibly before the pool is back: it must arrive
    # either from the stored-events query of the new REQ or live.
    while_away = note(author, "published while the pool was reconnecting")
    assert (await publish_once(relay.url, while_away, timeout_s=WAIT_S)).accepted
    await receiver.event(while_away.id)
    assert await pool.wait_connected(timeout_s=WAIT_S)
    later = note(author, "after the reconnect")
    assert (await publish_once(relay.url, later, timeout_s=WAIT_S)).accepted
    await receiver.event(later.id)

    assert pool.status()[0].connects >= 2
    # The event from before the crash came back in the new REQ's window but is not repeated.
    assert receiver.count(before.id) == 1


async def test_publish_waits_for_a_reconnect_within_its_timeout(
    relay: Any, author: Keys, pool_factory: Callable[..., Any]
) -> None:
    pool: RelayPool = await pool_factory([relay.url])
    assert await pool.wait_connected(timeout_s=WAIT_S)
    await asyncio.to_thread(relay.stop, kill=True)
    publishing = asyncio.create_task(pool.publish(note(author, "queued"), timeout_s=WAIT_S))
    await asyncio.to_thread(relay.start)
    result = await publishing
    assert result.ok, result


async def test_two_relays_each_event_emitted_once(
    relay_factory: Callable[[], Any], author: Keys, pool_factory: Callable[..., Any]
) -> None:
    one, two = relay_factory(), relay_factory()
    pool: RelayPool = await pool_factory([one.url, two.url])
    await pool.subscribe("notes", [Filter(kinds=[1], authors=[author.public_key])], lookback_s=600)
    receiver = Receiver(pool)
    assert await pool.wait_connected(timeout_s=WAIT_S, all_relays=True)

    shared = note(author, "on both relays")
    assert (await publish_once(one.url, shared, timeout_s=WAIT_S)).accepted
    assert (await publish_once(two.url, shared, timeout_s=WAIT_S)).accepted
    # A relay sends events on one connection in order: once each relay's own marker arrived,
    # that relay's copy of `shared` has been through the pool.
    mark_one, mark_two = note(author, "marker one"), note(author, "marker two")
    assert (await publish_once(one.url, mark_one, timeout_s=WAIT_S)).accepted
    assert (await publish_once(two.url, mark_two, timeout_s=WAIT_S)).accepted
    await receiver.event(mark_one.id)
    await receiver.event(mark_two.id)

    assert receiver.count(shared.id) == 1
    assert {e.id: url for url, e in receiver.seen}[mark_one.id] == one.url
    assert {e.id: url for url, e in receiver.seen}[mark_two.id] == two.url


async def test_publish_to_a_dead_relay_times_out_and_the_live_one_accepts(
    relay_url: str,
    author: Keys,
    pool_factory: Callable[..., Any],
    free_port_factory: Callable[[], int],
) -> None:
    dead = f"ws://127.0.0.1:{free_port_factory()}"
    pool: RelayPool = await pool_factory([relay_url, dead])
    result = await pool.publish(note(author, "to both"), timeout_s=1.0)
    live_outcome, dead_outcome = result.outcome(relay_url), result.outcome(dead)
    assert live_outcome is not None
    assert live_outcome.accepted
    assert dead_outcome is not None
    assert dead_outcome.timed_out
    assert not dead_outcome.accepted
    assert result.accepted_by == (relay_url,)


@pytest.fixture
async def silent_relay_url(free_port_factory: Callable[[], int]) -> AsyncIterator[str]:
    """A websocket server that accepts everything and never answers."""

    async def swallow(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    port = free_port_factory()
    async with serve(swallow, "127.0.0.1", port):
        yield f"ws://127.0.0.1:{port}"


async def test_a_silent_relay_does_not_block_the_live_one(
    relay_url: str, silent_relay_url: str, author: Keys, pool_factory: Callable[..., Any]
) -> None:
    pool: RelayPool = await pool_factory([relay_url, silent_relay_url])
    await pool.subscribe("notes", [Filter(kinds=[1], authors=[author.public_key])], lookback_s=600)
    receiver = Receiver(pool)
    assert await pool.wait_connected(timeout_s=WAIT_S, all_relays=True)
    event = note(author, "the silent relay never answers this")
    publishing = asyncio.create_task(pool.publish(event, timeout_s=WAIT_S * 4))
    # The live relay stores the event and sends it back through the subscription while the
    # publish is still waiting for the silent relay's OK.
    url, _ = await receiver.event(event.id)
    assert url == relay_url
    assert not publishing.done()
    publishing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await publishing
    # A short publish reports each relay separately.
    result = await pool.publish(note(author, "short"), timeout_s=1.0)
    silent = result.outcome(silent_relay_url)
    assert result.accepted_by == (relay_url,)
    assert silent is not None
    assert silent.timed_out


async def test_oversized_frames_are_dropped_without_losing_the_connection(
    relay_url: str, author: Keys, pool_factory: Callable[..., Any]
) -> None:
    pool: RelayPool = await pool_factory([relay_url], max_frame_bytes=4096)
    await pool.subscribe("notes", [Filter(kinds=[1], authors=[author.public_key])], lookback_s=600)
    receiver = Receiver(pool)
    assert await pool.wait_connected(timeout_s=WAIT_S)
    big, small = note(author, "x" * 8000), note(author, "small")
    assert (await publish_once(relay_url, big, timeout_s=WAIT_S)).accepted
    assert (await publish_once(relay_url, small, timeout_s=WAIT_S)).accepted
    await receiver.event(small.id)
    assert receiver.count(big.id) == 0
    assert pool.status()[0].connects == 1


async def test_frames_past_the_hard_limit_end_the_connection_which_comes_back(
    free_port_factory: Callable[[], int],
) -> None:
    sent = asyncio.Event()

    async def flood(ws: ServerConnection) -> None:
        await ws.send(json.dumps(["NOTICE", "x" * (2 * 1024 * 1024)]))
        sent.set()
        async for _ in ws:
            pass

    port = free_port_factory()
    async with serve(flood, "127.0.0.1", port, max_size=None):
        pool = await started_pool([f"ws://127.0.0.1:{port}"], max_frame_bytes=4096)
        try:
            async with asyncio.timeout(WAIT_S):
                while pool.status()[0].connects < 2:
                    await asyncio.sleep(0.02)
            assert sent.is_set()
            assert pool.status()[0].last_error is not None
        finally:
            await pool.close()


async def test_nip42_auth_is_answered_and_the_publish_retried(
    auth_relay_url: str, author: Keys, pool_factory: Callable[..., Any]
) -> None:
    dvm = Keys.generate()
    pool: RelayPool = await pool_factory([auth_relay_url], keys=dvm)
    result = await pool.publish(note(author, "needs auth"), timeout_s=WAIT_S)
    assert result.ok, result
    once = await publish_once(auth_relay_url, note(author, "once"), keys=dvm, timeout_s=WAIT_S)
    assert once.accepted, once


async def test_without_keys_auth_required_is_reported(
    auth_relay_url: str, author: Keys, pool_factory: Callable[..., Any]
) -> None:
    pool: RelayPool = await pool_factory([auth_relay_url])
    [outcome] = (await pool.publish(note(author, "no auth"), timeout_s=WAIT_S)).outcomes
    assert not outcome.accepted
    assert outcome.prefix == "auth-required"


async def test_extra_relays_from_a_request_get_the_event_too(
    relay_factory: Callable[[], Any], author: Keys, pool_factory: Callable[..., Any]
) -> None:
    own, extra = relay_factory(), relay_factory()
    pool: RelayPool = await pool_factory([own.url], extra_relays_public_only=False)
    event = note(author, "answer")
    result = await pool.publish(
        event, relays=[extra.url, own.url + "/", "https://not-a-relay.example", "ws://[::1"]
    )
    assert sorted(result.accepted_by) == sorted([own.url, extra.url])
    assert len(result.outcomes) == 2  # the bad urls are skipped, the pool's own not repeated
    # The extra relay really has it.
    check = await publish_once(extra.url, event, timeout_s=WAIT_S)
    assert check.prefix == "duplicate"


async def test_extra_relays_on_private_addresses_are_refused_by_default(
    relay_factory: Callable[[], Any], author: Keys, pool_factory: Callable[..., Any]
) -> None:
    own, extra = relay_factory(), relay_factory()
    pool: RelayPool = await pool_factory([own.url])
    result = await pool.publish(note(author, "answer"), relays=[extra.url], timeout_s=WAIT_S)
    refused = result.outcome(extra.url)
    assert refused is not None
    assert not refused.accepted
    assert not refused.timed_out
    assert "public" in refused.message
    assert result.accepted_by == (own.url,)


async def test_publish_once_reports_a_refused_connection(
    author: Keys, free_port_factory: Callable[[], int]
) -> None:
    url = f"ws://127.0.0.1:{free_port_factory()}"
    outcome = await publish_once(url, note(author, "x"), timeout_s=5)
    assert not outcome.accepted
    assert not outcome.timed_out
    assert outcome.message.startswith("connection failed")


async def test_close_ends_the_event_stream(relay_url: str) -> None:
    pool = await started_pool([relay_url])
    receiver = Receiver(pool)
    reading = asyncio.create_task(receiver.until(lambda _: False))
    await pool.close()
    with pytest.raises(StopAsyncIteration):
        await reading


async def test_local_sdk_relay_round_trip(
    local_relay_url: str, author: Keys, pool_factory: Callable[..., Any]
) -> None:
    pool: RelayPool = await pool_factory([local_relay_url])
    await pool.subscribe("notes", [Filter(kinds=[1], authors=[author.public_key])])
    receiver = Receiver(pool)
    assert await pool.wait_connected(timeout_s=WAIT_S)
    event = note(author, "via nostr-sdk")
    assert (await pool.publish(event, timeout_s=WAIT_S)).ok
    assert (await receiver.event(event.id))[1] == event
