"""The relay pool: connections to a set of relays, kept up, subscribed, publishing.

    async with RelayPool(["wss://relay.damus.io", "wss://nos.lol"], keys=keys) as pool:
        await pool.subscribe("jobs", [Filter(kinds=[5100])], lookback_s=600)
        async for relay_url, event in pool.events():          # each event id once
            result = await pool.publish(answer, relays=job.relays, timeout_s=10)

One ``RelayLink`` per relay (``link.py``) does the connecting; the pool holds the
subscriptions, merges the links' events (each id once, a bounded LRU of ids), fans publishes
out to every link and, through ``publish_once``, to the extra relays a request names.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Sequence
from types import TracebackType

from nostr_imagegen.errors import MessageError, RelayError
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.nostr.messages import MAX_FRAME_BYTES, Filter, encode_req
from nostr_imagegen.nostr.signer import Signer
from nostr_imagegen.service.relay.connection import describe, short
from nostr_imagegen.service.relay.link import LinkSettings, RelayLink, RelayStatus
from nostr_imagegen.service.relay.publish import PublishResult, RelayOutcome, publish_once
from nostr_imagegen.service.relay.urls import normalize_relay_url

__all__ = ["RelayPool"]

logger = logging.getLogger(__name__)

#: Subscriptions one pool holds at most (each one is a REQ on every relay).
_MAX_SUBSCRIPTIONS = 64


class RelayPool:
    """Connections to a set of relays, kept up, with subscriptions and publishing.

    ``urls``: the pool's relays (``ws://``/``wss://``; duplicates are merged). ``keys``:
    answers NIP-42 challenges (and nothing else). ``max_frame_bytes``: larger frames are
    dropped. ``connect_timeout_s``: per connection attempt. ``ping_interval_s`` /
    ``ping_timeout_s``: websocket keepalive. ``backoff_base_s`` / ``backoff_max_s``: reconnect
    delays (exponential with jitter). ``resubscribe_slack_s``: how far before the newest event
    seen a subscription restarts after a reconnect. ``seen_cache_size``: event ids remembered
    for de-duplication across relays. ``event_queue_size``: events buffered for ``events()``
    (relays wait when it is full). ``max_extra_relays``: how many relays a ``publish`` may add
    from a request; ``extra_relays_public_only``: they must resolve to public addresses.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        keys: Signer | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        connect_timeout_s: float = 10.0,
        ping_interval_s: float | None = 30.0,
        ping_timeout_s: float | None = 20.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        resubscribe_slack_s: int = 60,
        seen_cache_size: int = 100_000,
        event_queue_size: int = 10_000,
        max_extra_relays: int = 8,
        extra_relays_public_only: bool = True,
    ) -> None:
        if isinstance(urls, str):
            raise RelayError("urls must be a list of relay urls, not one string")
        normalized = list(dict.fromkeys(normalize_relay_url(u) for u in urls))
        if not normalized:
            raise RelayError("a relay pool needs at least one relay url")
        self._urls = tuple(normalized)
        self._settings = LinkSettings(
            keys=keys,
            max_frame_bytes=max_frame_bytes,
            connect_timeout_s=connect_timeout_s,
            ping_interval_s=ping_interval_s,
            ping_timeout_s=ping_timeout_s,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
            resubscribe_slack_s=resubscribe_slack_s,
        )
        self._seen_cache_size = seen_cache_size
        self._event_queue_size = event_queue_size
        self._max_extra_relays = max_extra_relays
        self._extra_public_only = extra_relays_public_only
        self._links: dict[str, RelayLink] = {}
        self._queue: asyncio.Queue[tuple[str, Event] | None] | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._subscriptions: dict[str, tuple[Filter, ...]] = {}
        self._started = False
        self._closing = False

    def __repr__(self) -> str:
        return f"RelayPool({list(self._urls)!r}, started={self._started})"

    @property
    def urls(self) -> tuple[str, ...]:
        """The pool's relays, normalized."""
        return self._urls

    def status(self) -> tuple[RelayStatus, ...]:
        """Connection state of every pool relay."""
        return tuple(link.status() for link in self._links.values())

    async def __aenter__(self) -> RelayPool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start one connection task per relay (returns at once; connecting goes on)."""
        if self._started:
            return
        if self._closing:
            raise RelayError("a closed relay pool cannot be started again")
        self._started = True
        self._queue = asyncio.Queue(maxsize=self._event_queue_size)
        for url in self._urls:
            link = RelayLink(url, self._settings, deliver=self._deliver)
            for sub_id, filters in self._subscriptions.items():
                link.subscribe(sub_id, filters)
            link.start()
            self._links[url] = link

    async def wait_connected(self, *, timeout_s: float, all_relays: bool = False) -> bool:
        """Wait until one (or every) pool relay is connected; ``False`` on timeout."""
        self._require_started()
        waits = [asyncio.create_task(link.connected.wait()) for link in self._links.values()]
        try:
            done, _ = await asyncio.wait(
                waits,
                timeout=timeout_s,
                return_when=asyncio.ALL_COMPLETED if all_relays else asyncio.FIRST_COMPLETED,
            )
        finally:
            for task in waits:
                task.cancel()
        return len(done) == len(waits) if all_relays else bool(done)

    async def close(self) -> None:
        """Close every connection and end ``events()``; idempotent."""
        if self._closing:
            return
        self._closing = True
        await asyncio.gather(*(link.close() for link in self._links.values()))
        if self._queue is not None:
            while True:  # make room for the end marker: nobody will read what is left
                try:
                    self._queue.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    self._queue.get_nowait()
        logger.info("relay pool closed")

    async def subscribe(
        self, subscription_id: str, filters: Sequence[Filter], *, lookback_s: int | None = None
    ) -> None:
        """Subscribe on every pool relay, now and after every reconnect.

        ``lookback_s`` gives filters without a ``since`` one of ``now - lookback_s``: stored
        events older than that are not fetched. Raises ``MessageError`` for a bad id or filter.
        """
        as_tuple = tuple(filters)
        if lookback_s is not None:
            since = max(0, int(time.time()) - lookback_s)
            as_tuple = tuple(f if f.since is not None else f.with_since(since) for f in as_tuple)
        encode_req(subscription_id, *as_tuple)  # validate before touching any session
        full = len(self._subscriptions) >= _MAX_SUBSCRIPTIONS
        if subscription_id not in self._subscriptions and full:
            raise MessageError(f"a relay pool holds at most {_MAX_SUBSCRIPTIONS} subscriptions")
        self._subscriptions[subscription_id] = as_tuple
        for link in self._links.values():
            link.subscribe(subscription_id, as_tuple)

    async def unsubscribe(self, subscription_id: str) -> None:
        """End a subscription on every relay."""
        self._subscriptions.pop(subscription_id, None)
        for link in self._links.values():
            link.unsubscribe(subscription_id)

    async def events(self) -> AsyncIterator[tuple[str, Event]]:
        """``(relay url, event)`` for every new event of every subscription, each id once.

        Ends when the pool is closed.
        """
        queue = self._require_started()
        while True:
            item = await queue.get()
            if item is None:
                queue.put_nowait(None)  # let other consumers end too
                return
            yield item

    async def publish(
        self, event: Event, *, relays: Sequence[str] | None = None, timeout_s: float = 10.0
    ) -> PublishResult:
        """Publish to every pool relay and to ``relays`` (say a request's ``relays`` tag).

        Waits at most ``timeout_s`` for each relay's OK, all relays in parallel. Extra relays
        that are not ``ws://``/``wss://`` URLs are skipped (logged); at most
        ``max_extra_relays`` are used. Never raises for relay trouble: read the outcomes.
        """
        self._require_started()
        if self._closing:
            raise RelayError("the relay pool is closed")
        extras = self._extra_targets(relays or ())
        deadline = asyncio.get_running_loop().time() + timeout_s
        jobs = [_safe(link.url, link.publish(event, deadline)) for link in self._links.values()]
        jobs += [
            _safe(
                url,
                publish_once(
                    url,
                    event,
                    keys=self._settings.keys,
                    timeout_s=timeout_s,
                    connect_timeout_s=self._settings.connect_timeout_s,
                    max_frame_bytes=self._settings.max_frame_bytes,
                    public_only=self._extra_public_only,
                ),
            )
            for url in extras
        ]
        outcomes = tuple(await asyncio.gather(*jobs))
        result = PublishResult(event.id, outcomes)
        logger.info(
            "published %s: accepted by %d of %d relays",
            event.id,
            len(result.accepted_by),
            len(outcomes),
            extra={"event_id": event.id, "accepted_by": list(result.accepted_by)},
        )
        return result

    # -- internals -----------------------------------------------------------------------------

    def _require_started(self) -> asyncio.Queue[tuple[str, Event] | None]:
        if self._queue is None:
            raise RelayError("the relay pool is not started (use `async with` or start())")
        return self._queue

    def _extra_targets(self, relays: Sequence[str]) -> list[str]:
        if isinstance(relays, str):
            relays = [relays]
        extras: list[str] = []
        for raw in relays:
            try:
                url = normalize_relay_url(raw)
            except RelayError as exc:
                logger.info("skipping relay %r: %s", short(str(raw), 100), exc)
                continue
            if url in self._links or url in extras:
                continue
            if len(extras) >= self._max_extra_relays:
                logger.info("more than %d extra relays; ignoring the rest", self._max_extra_relays)
                break
            extras.append(url)
        return extras

    async def _deliver(self, url: str, event: Event) -> None:
        if event.id in self._seen:
            self._seen.move_to_end(event.id)
            return
        self._seen[event.id] = None
        while len(self._seen) > self._seen_cache_size:
            self._seen.popitem(last=False)
        if self._queue is not None:
            await self._queue.put((url, event))


async def _safe(url: str, job: Awaitable[RelayOutcome]) -> RelayOutcome:
    """One relay's publish; an unexpected error becomes that relay's outcome, not everyone's."""
    try:
        return await job
    except Exception as exc:  # one relay's surprise must not fail the other relays' results
        logger.warning("publish to %s failed: %s", url, describe(exc), exc_info=True)
        return RelayOutcome(url, False, f"error: {describe(exc)}")
