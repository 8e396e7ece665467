"""One publish and what the relays answered: ``publish_once``, ``RelayOutcome``, ``PublishResult``.

    outcome = await publish_once("wss://nos.lol", event, keys=keys, public_only=True)
    outcome.accepted, outcome.prefix, outcome.message   # True, None, ""  (["OK", id, true, ""])

``publish_once`` connects, sends ``["EVENT", {...}]``, waits for the relay's ``["OK", id, ...]``
and disconnects. The pool uses it for the relays a job request names (its ``relays`` tag);
such URLs come from strangers, hence ``public_only``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from nostr_imagegen.errors import EventError, MessageError, RelayError
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.nostr.messages import MAX_FRAME_BYTES
from nostr_imagegen.nostr.session import Notice, PublishAcked, RelaySession
from nostr_imagegen.nostr.signer import Signer
from nostr_imagegen.service.relay.connection import (
    close_quietly,
    describe,
    hard_max,
    open_connection,
    short,
)
from nostr_imagegen.service.relay.urls import normalize_relay_url

__all__ = ["PublishResult", "RelayOutcome", "publish_once"]

logger = logging.getLogger(__name__)


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


async def publish_once(
    url: str,
    event: Event,
    *,
    keys: Signer | None = None,
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
            ws = await open_connection(
                url,
                connect_timeout_s=min(connect_timeout_s, timeout_s),
                ping_interval_s=None,
                ping_timeout_s=None,
                hard_max_bytes=hard_max(max_frame_bytes),
                public_only=public_only,
            )
            try:
                return await _publish_on(ws, url, event, keys, max_frame_bytes)
            finally:
                await close_quietly(ws)
    except TimeoutError:
        return RelayOutcome(url, False, "timed out waiting for the relay", None, timed_out=True)
    except RelayError as exc:
        return RelayOutcome(url, False, str(exc))
    except (OSError, WebSocketException) as exc:
        return RelayOutcome(url, False, f"connection failed: {describe(exc)}")


async def _publish_on(
    ws: ClientConnection, url: str, event: Event, keys: Signer | None, max_frame_bytes: int
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
                    "notice from %s: %s", url, short(happening.message), extra={"relay": url}
                )
    return RelayOutcome(url, False, "connection closed before an OK")
