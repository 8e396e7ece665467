"""One relay of a pool: its session, its connection task, and the publishes waiting on it.

A ``RelayLink`` keeps one relay connected for as long as it runs::

    link = RelayLink("wss://nos.lol", settings, deliver=pool_deliver)
    link.start()                              # connect, reconnect with backoff, forever
    link.subscribe("jobs", filters)           # sent now if connected, and after every reconnect
    outcome = await link.publish(event, deadline)
    await link.close()

Everything it needs is in its ``LinkSettings`` (frozen, checked once) and the ``deliver``
callback that receives each new event; it knows nothing else about the pool that owns it.

- Reconnects with exponential backoff and jitter; the attempt counter resets once a connection
  has lasted 30 s. On every connection each subscription is requested again with ``since`` =
  newest ``created_at`` seen minus ``resubscribe_slack_s`` (the session works that out).
- A ``CLOSED`` subscription is requested again after a backoff, at most 5 times per
  connection, unless its prefix says asking again will not help (``blocked:``,
  ``restricted:``, ``auth-required:``, ``invalid:``, ``unsupported:``, ``pow:``).
- A publish waits for the connection, then for its ``OK``, within one deadline; when the
  connection drops before the ``OK`` it is sent again on the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from nostr_imagegen.errors import EventError, MessageError, RelayError
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.nostr.messages import MAX_FRAME_BYTES, Filter
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
from nostr_imagegen.nostr.signer import Signer
from nostr_imagegen.service.relay.backoff import backoff_delay
from nostr_imagegen.service.relay.connection import (
    close_quietly,
    describe,
    hard_max,
    open_connection,
    short,
)
from nostr_imagegen.service.relay.publish import RelayOutcome

__all__ = ["LinkSettings", "RelayLink", "RelayStatus"]

logger = logging.getLogger(__name__)

#: Prefixes of a CLOSED that asking again will not change.
_FINAL_CLOSED_PREFIXES: Final = frozenset(
    {"blocked", "restricted", "auth-required", "invalid", "unsupported", "pow"}
)
_MAX_CLOSED_RETRIES: Final = 5
_STABLE_CONNECTION_S: Final = 30.0

#: ``await deliver(relay_url, event)`` for every new event a link receives.
Deliver = Callable[[str, Event], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """How every link of a pool connects, keeps alive, backs off and resubscribes.

    ``keys`` answer NIP-42 challenges (and nothing else). ``max_frame_bytes``: larger frames
    are dropped. ``connect_timeout_s``: per connection attempt. ``ping_interval_s`` /
    ``ping_timeout_s``: websocket keepalive (``None``: off). ``backoff_base_s`` /
    ``backoff_max_s``: reconnect delays. ``resubscribe_slack_s``: how far before the newest
    event seen a subscription restarts after a reconnect. Raises ``RelayError`` for settings
    that cannot work.
    """

    keys: Signer | None = field(default=None, repr=False)
    max_frame_bytes: int = MAX_FRAME_BYTES
    connect_timeout_s: float = 10.0
    ping_interval_s: float | None = 30.0
    ping_timeout_s: float | None = 20.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    resubscribe_slack_s: int = 60

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 1024:
            raise RelayError("max_frame_bytes must be at least 1024")
        if not 0 < self.backoff_base_s <= self.backoff_max_s:
            raise RelayError("backoff_base_s must be positive and at most backoff_max_s")

    def backoff(self, attempt: int) -> float:
        """Seconds before try ``attempt`` (0, 1, ...) of something that failed."""
        return backoff_delay(attempt, base_s=self.backoff_base_s, max_s=self.backoff_max_s)


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """A snapshot of one pool relay, for health checks and logs."""

    url: str
    connected: bool
    connects: int
    last_error: str | None


class RelayLink:
    """One relay kept connected: see the module doc. ``url`` must be normalized."""

    def __init__(self, url: str, settings: LinkSettings, *, deliver: Deliver) -> None:
        self.url = url
        self.settings = settings
        self._deliver = deliver
        self.session = RelaySession(
            url, keys=settings.keys, max_frame_bytes=settings.max_frame_bytes
        )
        self.connected = asyncio.Event()
        self.connects = 0
        self.last_error: str | None = None
        self._closing = False
        self._generation = 0  # bumped per connection; stale timers check it
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._waiters: dict[str, list[asyncio.Future[PublishAcked | None]]] = {}
        self._closed_retries: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None

    def __repr__(self) -> str:
        return f"RelayLink({self.url!r}, connected={self.connected.is_set()})"

    def status(self) -> RelayStatus:
        """Connected now?, how many connections so far, and the last error."""
        return RelayStatus(self.url, self.connected.is_set(), self.connects, self.last_error)

    def start(self) -> None:
        """Start the connection task (returns at once; connecting goes on)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"relay {self.url}")

    async def close(self) -> None:
        """Stop reconnecting, end the connection, and let waiting publishes give up."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._ws is not None:
            await close_quietly(self._ws)

    def subscribe(self, subscription_id: str, filters: Sequence[Filter]) -> None:
        """Hold the subscription in the session; the REQ goes out now if connected, and on
        every reconnect."""
        self._send(self.session.subscribe(subscription_id, filters))

    def unsubscribe(self, subscription_id: str) -> None:
        """End a subscription this link holds (``CLOSE``); unknown ids are ignored."""
        if subscription_id in self.session.subscription_ids:
            self._send(self.session.unsubscribe(subscription_id))

    async def publish(self, event: Event, deadline: float) -> RelayOutcome:
        """Send ``event`` and wait for its ``OK`` until ``deadline`` (event loop time)."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                return RelayOutcome(self.url, False, "not connected before the timeout", None, True)
            try:
                async with asyncio.timeout(remaining):
                    await self.connected.wait()
            except TimeoutError:
                return RelayOutcome(self.url, False, "not connected before the timeout", None, True)
            future: asyncio.Future[PublishAcked | None] = loop.create_future()
            waiting = self._waiters.setdefault(event.id, [])
            waiting.append(future)
            try:
                try:
                    self._send(self.session.publish(event))
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
                if not waiting and self._waiters.get(event.id) is waiting:
                    del self._waiters[event.id]
                    self.session.abandon(event.id)
            if ack is not None:
                return RelayOutcome(self.url, ack.accepted, ack.message, ack.prefix)
            # The connection dropped before the OK: send again on the next one.

    # -- the connection ------------------------------------------------------------------------

    def _send(self, frame: str) -> None:
        """Queue a frame for the current connection (dropped when there is none)."""
        if self.connected.is_set():
            self._outbox.put_nowait(frame)

    async def _run(self) -> None:
        settings = self.settings
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                ws = await open_connection(
                    self.url,
                    connect_timeout_s=settings.connect_timeout_s,
                    ping_interval_s=settings.ping_interval_s,
                    ping_timeout_s=settings.ping_timeout_s,
                    hard_max_bytes=hard_max(settings.max_frame_bytes),
                    public_only=False,
                )
            except (OSError, TimeoutError, WebSocketException, RelayError) as exc:
                self.last_error = describe(exc)
                logger.info(
                    "cannot connect to %s: %s", self.url, self.last_error, extra={"relay": self.url}
                )
            else:
                try:
                    await self._serve(ws)
                except Exception as exc:  # a bug must not end this relay's task for good
                    self.last_error = describe(exc)
                    logger.exception("connection to %s failed", self.url, extra={"relay": self.url})
                if time.monotonic() - started >= _STABLE_CONNECTION_S:
                    attempt = 0
            delay = settings.backoff(attempt)
            attempt += 1
            logger.debug("reconnecting to %s in %.2fs", self.url, delay, extra={"relay": self.url})
            await asyncio.sleep(delay)

    async def _serve(self, ws: ClientConnection) -> None:
        self._ws = ws
        self.connects += 1
        self._generation += 1
        self._closed_retries.clear()
        self._outbox = asyncio.Queue()
        for frame in self.session.connection_made(
            now=int(time.time()), slack_s=self.settings.resubscribe_slack_s
        ):
            self._outbox.put_nowait(frame)
        self.connected.set()
        logger.info("connected to %s", self.url, extra={"relay": self.url})
        writer = asyncio.create_task(self._write(ws, self._outbox))
        try:
            async for raw in ws:
                await self._handle(raw)
            self.last_error = "connection closed by the relay"
        except (WebSocketException, OSError) as exc:
            self.last_error = describe(exc)
        finally:
            self.connected.clear()
            self._ws = None
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            lost = self.session.connection_lost()
            for futures in self._waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_result(None)  # the publish loop retries on the next link
            logger.info(
                "disconnected from %s (%s; %d publishes awaiting OK)",
                self.url,
                "pool closing" if self._closing else self.last_error,
                len(lost),
                extra={"relay": self.url},
            )
            await close_quietly(ws)

    async def _write(self, ws: ClientConnection, outbox: asyncio.Queue[str]) -> None:
        try:
            while True:
                frame = await outbox.get()
                await ws.send(frame)
        except (WebSocketException, OSError):
            await close_quietly(ws)  # the reader sees the close and reconnects

    async def _handle(self, raw: str | bytes) -> None:
        try:
            happenings = self.session.receive(raw)
        except (MessageError, EventError) as exc:
            logger.info("bad frame from %s: %s", self.url, exc, extra={"relay": self.url})
            return
        for frame in self.session.take_outgoing():
            self._outbox.put_nowait(frame)
        for happening in happenings:
            await self._dispatch(happening)

    async def _dispatch(self, happening: Happening) -> None:
        url = self.url
        if isinstance(happening, EventReceived):
            await self._deliver(url, happening.event)
        elif isinstance(happening, PublishAcked):
            for future in self._waiters.pop(happening.event_id, []):
                if not future.done():
                    future.set_result(happening)
        elif isinstance(happening, SubscriptionClosed):
            self._on_closed(happening)
        elif isinstance(happening, Notice):
            logger.info("notice from %s: %s", url, short(happening.message), extra={"relay": url})
        elif isinstance(happening, AuthChallenge):
            logger.debug("auth challenge from %s", url, extra={"relay": url})
        elif isinstance(happening, AuthResult):
            level = logging.INFO if happening.accepted else logging.WARNING
            logger.log(
                level,
                "auth to %s %s %s",
                url,
                "accepted" if happening.accepted else "refused:",
                short(happening.message),
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
        tries = self._closed_retries.get(sub_id, 0)
        final = closed.prefix in _FINAL_CLOSED_PREFIXES or tries >= _MAX_CLOSED_RETRIES
        logger.warning(
            "%s closed subscription %s: %s%s",
            self.url,
            sub_id,
            short(closed.message),
            "" if final else " (asking again later)",
            extra={"relay": self.url},
        )
        if final:
            return
        self._closed_retries[sub_id] = tries + 1
        delay = self.settings.backoff(tries)
        generation = self._generation
        asyncio.get_running_loop().call_later(delay, self._ask_again, sub_id, generation)

    def _ask_again(self, sub_id: str, generation: int) -> None:
        if generation != self._generation or not self.connected.is_set():
            return  # a reconnect requests every subscription anyway
        if sub_id not in self.session.subscription_ids or self.session.is_open(sub_id):
            return
        self._send(
            self.session.resubscribe(
                sub_id, slack_s=self.settings.resubscribe_slack_s, now=int(time.time())
            )
        )
