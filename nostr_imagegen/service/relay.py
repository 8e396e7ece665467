"""Relay connections on websockets: a pool that stays subscribed and publishes with receipts.

A thin asyncio adapter around the sans-I/O ``RelaySession`` (nostr_imagegen.nostr.session)::

    async with RelayPool(["wss://relay.damus.io", "wss://nos.lol"], keys=keys) as pool:
        pool.subscribe("jobs", [Filter(kinds=[5100])], lookback_s=600)
        async for relay_url, event in pool.events():          # each event id once
            result = await pool.publish(answer, relays=job.relays, timeout_s=10)
            result.accepted_by                                # ("wss://nos.lol", ...)

What the pool does for you:

- one task per relay: a slow or dead relay never blocks the others; every publish waits per
  relay, bounded by ``timeout_s``;
- reconnects with exponential backoff and jitter; after a reconnect every subscription is
  requested again with ``since`` = newest ``created_at`` seen minus a slack, so events
  published while disconnected still arrive, once;
- each event id is emitted once per pool (a bounded LRU of ids) whichever relays carry it;
- NIP-42: with ``keys`` a challenge is answered automatically; a publish refused with
  ``auth-required:`` is sent once more after the AUTH is accepted;
- CLOSED subscriptions are requested again after a backoff unless the reason will not change
  (``blocked:``, ``restricted:``, ``auth-required:``, ``invalid:``, ``unsupported:``, ``pow:``);
- keepalive pings (a relay that stops answering is dropped and reconnected); frames larger
  than ``max_frame_bytes`` are dropped, and larger than ``4 x max_frame_bytes`` (at least
  1 MiB) end the connection: websockets cannot skip a frame it refuses to buffer;
- ``publish(..., relays=[...])`` also reaches relays a job request named (its ``relays``
  tag): a bounded number, ``ws://``/``wss://`` only, through short-lived connections that by
  default may only reach public internet addresses (the request is a stranger's).

Logs carry the relay URL (``extra={"relay": url}``) and event ids, never keys or contents.
HTTP proxies from the environment are not used and redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as _ws_connect
from websockets.exceptions import WebSocketException

from nostr_imagegen.errors import EventError, MessageError, RelayError
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.messages import MAX_FRAME_BYTES, Filter, encode_req
from nostr_imagegen.nostr.session import (
    AuthChallenge,
    AuthResult,
    EndOfStoredEvents,
    EventReceived,
    Happening,
    Notice,
    PublishAcked,
    RelaySession,
    SubscriptionClosed,
)
from nostr_imagegen.service.netguard import is_public_address, parse_ip

__all__ = [
    "PublishResult",
    "RelayOutcome",
    "RelayPool",
    "RelayStatus",
    "backoff_delay",
    "normalize_relay_url",
    "publish_once",
]

logger = logging.getLogger(__name__)

MAX_RELAY_URL_CHARS: Final = 2048
#: Prefixes of a CLOSED that asking again will not change.
_FINAL_CLOSED_PREFIXES: Final = frozenset(
    {"blocked", "restricted", "auth-required", "invalid", "unsupported", "pow"}
)
_MAX_CLOSED_RETRIES: Final = 5
_STABLE_CONNECTION_S: Final = 30.0
_rng = random.SystemRandom()


def normalize_relay_url(url: str) -> str:
    """A relay URL checked and normalized: ``ws``/``wss``, a host, no credentials.

    Scheme and host are lowercased, a lone trailing ``/`` is dropped and the fragment removed,
    so the same relay written twice is one relay: ``normalize_relay_url("WSS://Nos.lol/")``
    is ``"wss://nos.lol"``. Raises ``RelayError`` for anything else.
    """
    if not isinstance(url, str):
        raise RelayError("a relay url must be a string")
    text = url.strip()
    if not text or len(text) > MAX_RELAY_URL_CHARS:
        raise RelayError(f"a relay url has 1 to {MAX_RELAY_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise RelayError("a relay url may not contain whitespace or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise RelayError(f"invalid relay url: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise RelayError(f"a relay url must start with ws:// or wss://, got {scheme or 'none'!r}")
    if not parts.hostname:
        raise RelayError("a relay url needs a host")
    if parts.username is not None or parts.password is not None:
        raise RelayError("a relay url may not carry credentials")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    path = "" if parts.path == "/" else parts.path
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def backoff_delay(
    attempt: int, *, base_s: float, max_s: float, rng: Callable[[], float] = _rng.random
) -> float:
    """Seconds to wait before reconnect ``attempt`` (0, 1, ...): exponential, capped, jittered.

    ``min(max_s, base_s * 2**attempt)`` scaled by a random factor in ``[0.5, 1)``, so many
    clients cut off together do not come back together.
    """
    ceiling = min(max_s, base_s * 2.0 ** min(attempt, 32))
    return ceiling * (0.5 + 0.5 * rng())


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    """What one relay said to one publish.

    ``accepted`` is true for an OK true and for a ``duplicate:`` refusal. ``timed_out`` means
    no OK arrived in time (the relay may still have stored the event).
    """

    url: str
    accepted: bool
    message: str = ""
    prefix: str | None = None
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Per-relay outcomes of one publish."""

    event_id: str
    outcomes: tuple[RelayOutcome, ...]

    @property
    def accepted_by(self) -> tuple[str, ...]:
        """URLs of the relays that accepted the event."""
        return tuple(o.url for o in self.outcomes if o.accepted)

    @property
    def ok(self) -> bool:
        """Whether at least one relay accepted the event."""
        return any(o.accepted for o in self.outcomes)

    def outcome(self, url: str) -> RelayOutcome | None:
        """The outcome for ``url`` (normalized the same way), or ``None``."""
        key = normalize_relay_url(url)
        return next((o for o in self.outcomes if o.url == key), None)


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """A snapshot of one pool relay, for health checks and logs."""

    url: str
    connected: bool
    connects: int
    last_error: str | None


class _NoRedirectConnect(_ws_connect):
    """websockets' connect without following HTTP redirects (a redirect could lead anywhere)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


async def _pinned_public_host(url: str) -> str:
    """Resolve the relay's host; every address must be public. Returns one to connect to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = parse_ip(host)
    if literal is not None:
        if not is_public_address(literal):
            raise RelayError(f"relay {url} is not on a public address")
        return str(literal)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RelayError(f"cannot resolve relay host {host!r}: {exc}") from None
    addresses = [parse_ip(str(info[4][0])) for info in infos]
    if not addresses or not all(a is not None and is_public_address(a) for a in addresses):
        raise RelayError(f"relay {url} resolves to a non-public address")
    return str(addresses[0])


async def _open(
    url: str,
    *,
    connect_timeout_s: float,
    ping_interval_s: float | None,
    ping_timeout_s: float | None,
    hard_max_bytes: int,
    public_only: bool,
) -> ClientConnection:
    kwargs: dict[str, Any] = {}
    async with asyncio.timeout(connect_timeout_s):
        if public_only:
            kwargs["host"] = await _pinned_public_host(url)
        return await _NoRedirectConnect(
            url,
            open_timeout=connect_timeout_s,
            ping_interval=ping_interval_s,
            ping_timeout=ping_timeout_s,
            close_timeout=2,
            max_size=hard_max_bytes,
            max_queue=16,
            proxy=None,
            user_agent_header=None,
            **kwargs,
        )


def _hard_max(max_frame_bytes: int) -> int:
    return max(4 * max_frame_bytes, 1024 * 1024)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(exc: BaseException) -> str:
    return _short(str(exc) or type(exc).__name__)


async def _close_quietly(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await ws.close()


async def publish_once(
    url: str,
    event: Event,
    *,
    keys: Keys | None = None,
    timeout_s: float = 10.0,
    connect_timeout_s: float = 10.0,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    public_only: bool = False,
) -> RelayOutcome:
    """Connect to one relay, publish ``event``, wait for its OK and disconnect.

    Never raises for relay trouble: refusals, connection failures and timeouts come back as a
    ``RelayOutcome``. With ``keys``, NIP-42 challenges are answered. With ``public_only`` the
    relay must resolve to public internet addresses only (use it for URLs from strangers).
    ``url`` must be a ``ws://``/``wss://`` URL (``RelayError`` otherwise).
    """
    url = normalize_relay_url(url)
    try:
        async with asyncio.timeout(timeout_s):
            ws = await _open(
                url,
                connect_timeout_s=min(connect_timeout_s, timeout_s),
                ping_interval_s=None,
                ping_timeout_s=None,
                hard_max_bytes=_hard_max(max_frame_bytes),
                public_only=public_only,
            )
            try:
                return await _publish_on(ws, url, event, keys, max_frame_bytes)
            finally:
                await _close_quietly(ws)
    except TimeoutError:
        return RelayOutcome(url, False, "timed out waiting for the relay", None, timed_out=True)
    except RelayError as exc:
        return RelayOutcome(url, False, str(exc))
    except (OSError, WebSocketException) as exc:
        return RelayOutcome(url, False, f"connection failed: {_describe(exc)}")


async def _safe(url: str, job: Awaitable[RelayOutcome]) -> RelayOutcome:
    """One relay's publish; an unexpected error becomes that relay's outcome, not everyone's."""
    try:
        return await job
    except Exception as exc:  # one relay's surprise must not fail the other relays' results
        logger.warning("publish to %s failed: %s", url, _describe(exc), exc_info=True)
        return RelayOutcome(url, False, f"error: {_describe(exc)}")


async def _publish_on(
    ws: ClientConnection, url: str, event: Event, keys: Keys | None, max_frame_bytes: int
) -> RelayOutcome:
    session = RelaySession(url, keys=keys, max_frame_bytes=max_frame_bytes)
    await ws.send(session.publish(event))
    async for raw in ws:
        try:
            happenings = session.receive(raw)
        except (MessageError, EventError) as exc:
            logger.info("bad frame from %s: %s", url, exc, extra={"relay": url})
            continue
        for frame in session.take_outgoing():
            await ws.send(frame)
        for happening in happenings:
            if isinstance(happening, PublishAcked) and happening.event_id == event.id:
                return RelayOutcome(url, happening.accepted, happening.message, happening.prefix)
            if isinstance(happening, Notice):
                logger.info(
                    "notice from %s: %s", url, _short(happening.message), extra={"relay": url}
                )
    return RelayOutcome(url, False, "connection closed before an OK")


# -- the pool ----------------------------------------------------------------------------------


class _Link:
    """One pool relay: its session, its connection task and the publishes waiting on it."""

    def __init__(self, pool: RelayPool, url: str) -> None:
        self.pool = pool
        self.url = url
        self.session = RelaySession(url, keys=pool._keys, max_frame_bytes=pool._max_frame_bytes)
        self.connected = asyncio.Event()
        self.connects = 0
        self.last_error: str | None = None
        self.generation = 0  # bumped per connection; stale timers check it
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.waiters: dict[str, list[asyncio.Future[PublishAcked | None]]] = {}
        self.closed_retries: dict[str, int] = {}
        self.task: asyncio.Task[None] | None = None
        self.ws: ClientConnection | None = None

    def status(self) -> RelayStatus:
        return RelayStatus(self.url, self.connected.is_set(), self.connects, self.last_error)

    def send(self, frame: str) -> None:
        """Queue a frame for the current connection (dropped when there is none)."""
        if self.connected.is_set():
            self.outbox.put_nowait(frame)

    async def run(self) -> None:
        pool = self.pool
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                ws = await _open(
                    self.url,
                    connect_timeout_s=pool._connect_timeout_s,
                    ping_interval_s=pool._ping_interval_s,
                    ping_timeout_s=pool._ping_timeout_s,
                    hard_max_bytes=_hard_max(pool._max_frame_bytes),
                    public_only=False,
                )
            except (OSError, TimeoutError, WebSocketException, RelayError) as exc:
                self.last_error = _describe(exc)
                logger.info(
                    "cannot connect to %s: %s", self.url, self.last_error, extra={"relay": self.url}
                )
            else:
                try:
                    await self._serve(ws)
                except Exception as exc:  # a bug must not end this relay's task for good
                    self.last_error = _describe(exc)
                    logger.exception("connection to %s failed", self.url, extra={"relay": self.url})
                if time.monotonic() - started >= _STABLE_CONNECTION_S:
                    attempt = 0
            delay = backoff_delay(attempt, base_s=pool._backoff_base_s, max_s=pool._backoff_max_s)
            attempt += 1
            logger.debug("reconnecting to %s in %.2fs", self.url, delay, extra={"relay": self.url})
            await asyncio.sleep(delay)

    async def _serve(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.connects += 1
        self.generation += 1
        self.closed_retries.clear()
        self.outbox = asyncio.Queue()
        for frame in self.session.connection_made(
            now=int(time.time()), slack_s=self.pool._resubscribe_slack_s
        ):
            self.outbox.put_nowait(frame)
        self.connected.set()
        logger.info("connected to %s", self.url, extra={"relay": self.url})
        writer = asyncio.create_task(self._write(ws, self.outbox))
        try:
            async for raw in ws:
                await self._handle(raw)
            self.last_error = "connection closed by the relay"
        except (WebSocketException, OSError) as exc:
            self.last_error = _describe(exc)
        finally:
            self.connected.clear()
            self.ws = None
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            lost = self.session.connection_lost()
            for futures in self.waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_result(None)  # the publish loop retries on the next link
            logger.info(
                "disconnected from %s (%s; %d publishes awaiting OK)",
                self.url,
                "pool closing" if self.pool._closing else self.last_error,
                len(lost),
                extra={"relay": self.url},
            )
            await _close_quietly(ws)

    async def _write(self, ws: ClientConnection, outbox: asyncio.Queue[str]) -> None:
        try:
            while True:
                frame = await outbox.get()
                await ws.send(frame)
        except (WebSocketException, OSError):
            await _close_quietly(ws)  # the reader sees the close and reconnects

    async def _handle(self, raw: str | bytes) -> None:
        try:
            happenings = self.session.receive(raw)
        except (MessageError, EventError) as exc:
            logger.info("bad frame from %s: %s", self.url, exc, extra={"relay": self.url})
            return
        for frame in self.session.take_outgoing():
            self.outbox.put_nowait(frame)
        for happening in happenings:
            await self._dispatch(happening)

    async def _dispatch(self, happening: Happening) -> None:
        url = self.url
        if isinstance(happening, EventReceived):
            await self.pool._deliver(url, happening.event)
        elif isinstance(happening, PublishAcked):
            for future in self.waiters.pop(happening.event_id, []):
                if not future.done():
                    future.set_result(happening)
        elif isinstance(happening, SubscriptionClosed):
            self._on_closed(happening)
        elif isinstance(happening, Notice):
            logger.info("notice from %s: %s", url, _short(happening.message), extra={"relay": url})
        elif isinstance(happening, AuthChallenge):
            logger.debug("auth challenge from %s", url, extra={"relay": url})
        elif isinstance(happening, AuthResult):
            level = logging.INFO if happening.accepted else logging.WARNING
            logger.log(
                level,
                "auth to %s %s %s",
                url,
                "accepted" if happening.accepted else "refused:",
                _short(happening.message),
                extra={"relay": url},
            )
        elif isinstance(happening, EndOfStoredEvents):
            logger.debug(
                "end of stored events on %s for %s",
                url,
                happening.subscription_id,
                extra={"relay": url},
            )

    def _on_closed(self, closed: SubscriptionClosed) -> None:
        sub_id = closed.subscription_id
        tries = self.closed_retries.get(sub_id, 0)
        final = closed.prefix in _FINAL_CLOSED_PREFIXES or tries >= _MAX_CLOSED_RETRIES
        logger.warning(
            "%s closed subscription %s: %s%s",
            self.url,
            sub_id,
            _short(closed.message),
            "" if final else " (asking again later)",
            extra={"relay": self.url},
        )
        if final:
            return
        self.closed_retries[sub_id] = tries + 1
        delay = backoff_delay(
            tries, base_s=self.pool._backoff_base_s, max_s=self.pool._backoff_max_s
        )
        generation = self.generation
        asyncio.get_running_loop().call_later(delay, self._ask_again, sub_id, generation)

    def _ask_again(self, sub_id: str, generation: int) -> None:
        if generation != self.generation or not self.connected.is_set():
            return  # a reconnect requests every subscription anyway
        if sub_id not in self.session.subscription_ids or self.session.is_open(sub_id):
            return
        self.send(
            self.session.resubscribe(
                sub_id, slack_s=self.pool._resubscribe_slack_s, now=int(time.time())
            )
        )

    async def publish(self, event: Event, deadline: float) -> RelayOutcome:
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0 or self.pool._closing:
                return RelayOutcome(self.url, False, "not connected before the timeout", None, True)
            try:
                async with asyncio.timeout(remaining):
                    await self.connected.wait()
            except TimeoutError:
                return RelayOutcome(self.url, False, "not connected before the timeout", None, True)
            future: asyncio.Future[PublishAcked | None] = loop.create_future()
            waiting = self.waiters.setdefault(event.id, [])
            waiting.append(future)
            try:
                try:
                    self.send(self.session.publish(event))
                except MessageError as exc:
                    return RelayOutcome(self.url, False, str(exc))
                try:
                    async with asyncio.timeout(deadline - loop.time()):
                        ack = await future
                except TimeoutError:
                    return RelayOutcome(self.url, False, "no OK before the timeout", None, True)
            finally:
                if future in waiting:
                    waiting.remove(future)
                if not waiting and self.waiters.get(event.id) is waiting:
                    del self.waiters[event.id]
                    self.session.abandon(event.id)
            if ack is not None:
                return RelayOutcome(self.url, ack.accepted, ack.message, ack.prefix)
            # The connection dropped before the OK: send again on the next one.


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
        keys: Keys | None = None,
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
        if max_frame_bytes < 1024:
            raise RelayError("max_frame_bytes must be at least 1024")
        if not 0 < backoff_base_s <= backoff_max_s:
            raise RelayError("backoff_base_s must be positive and at most backoff_max_s")
        self._urls = tuple(normalized)
        self._keys = keys
        self._max_frame_bytes = max_frame_bytes
        self._connect_timeout_s = connect_timeout_s
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._resubscribe_slack_s = resubscribe_slack_s
        self._seen_cache_size = seen_cache_size
        self._event_queue_size = event_queue_size
        self._max_extra_relays = max_extra_relays
        self._extra_public_only = extra_relays_public_only
        self._links: dict[str, _Link] = {}
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
            link = _Link(self, url)
            for sub_id, filters in self._subscriptions.items():
                link.session.subscribe(sub_id, filters)
            link.task = asyncio.create_task(link.run(), name=f"relay {url}")
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
        tasks = [link.task for link in self._links.values() if link.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in self._links.values():
            if link.ws is not None:
                await _close_quietly(link.ws)
        if self._queue is not None:
            while True:  # make room for the end marker: nobody will read what is left
                try:
                    self._queue.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    self._queue.get_nowait()
        logger.info("relay pool closed")

    def subscribe(
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
        if subscription_id not in self._subscriptions and len(self._subscriptions) >= 64:
            raise MessageError("a relay pool holds at most 64 subscriptions")
        self._subscriptions[subscription_id] = as_tuple
        for link in self._links.values():
            link.send(link.session.subscribe(subscription_id, as_tuple))

    def unsubscribe(self, subscription_id: str) -> None:
        """End a subscription on every relay."""
        self._subscriptions.pop(subscription_id, None)
        for link in self._links.values():
            if subscription_id in link.session.subscription_ids:
                link.send(link.session.unsubscribe(subscription_id))

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
                    keys=self._keys,
                    timeout_s=timeout_s,
                    connect_timeout_s=self._connect_timeout_s,
                    max_frame_bytes=self._max_frame_bytes,
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
                logger.info("skipping relay %r: %s", _short(str(raw), 100), exc)
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
