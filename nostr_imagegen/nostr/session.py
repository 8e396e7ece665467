"""A sans-I/O client session with one relay (h11 / h2 style): frames in, happenings out.

The session never touches a socket or a clock. The caller sends the frames it gets and feeds
back every frame it receives::

    session = RelaySession("wss://relay.example.com", keys=keys)
    send(session.connection_made())                 # REQ frames for known subscriptions
    send(session.subscribe("jobs", [Filter(kinds=[5100])]))
    send(session.publish(result_event))
    for happening in session.receive(frame):        # one frame from the relay
        ...                                         # EventReceived, PublishAcked, ...
    send(session.take_outgoing())                   # frames the session chose to send itself
    lost = session.connection_lost()                # publishes that never got their OK

What it takes care of:

- per-subscription de-duplication (a bounded LRU of event ids), dropping events that do not
  match the subscription's filters or belong to no subscription of ours;
- the ``since`` of a subscription after a reconnect: the newest ``created_at`` seen minus a
  slack, so nothing published while disconnected is missed and little is fetched twice;
- OK bookkeeping: ``duplicate:`` counts as accepted; an OK with an empty or malformed id (a
  real relay answers rejected events that way) is matched to the oldest publish still
  waiting, so a caller never hangs on it; an OK for an id we are not waiting for is ignored;
- NIP-42: with ``keys``, a challenge is answered with a signed kind 22242 event at once; a
  publish refused with ``auth-required:`` is sent once more after the relay accepts the AUTH,
  and a subscription CLOSED with ``auth-required:`` is requested once more.

Malformed frames raise ``MessageError`` / ``EventError`` from ``receive`` and leave the
session unchanged: log them and carry on.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from nostr_imagegen.errors import MessageError
from nostr_imagegen.nostr.event import Event, sign_event
from nostr_imagegen.nostr.hexkeys import is_hex64
from nostr_imagegen.nostr.messages import (
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
)
from nostr_imagegen.nostr.nip42 import build_auth_event
from nostr_imagegen.nostr.signer import Signer
from nostr_imagegen.nostr.urls import RELAY_SCHEMES, url_problem

__all__ = [
    "AuthChallenge",
    "AuthResult",
    "EndOfStoredEvents",
    "EventReceived",
    "Happening",
    "Notice",
    "PublishAcked",
    "RelaySession",
    "SubscriptionClosed",
]

logger = logging.getLogger(__name__)

#: A relay may send many challenges; we sign at most this many AUTH events per connection.
_MAX_AUTHS_PER_CONNECTION = 8


# -- happenings --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventReceived:
    """A new event (first time on this subscription) matching the subscription's filters."""

    subscription_id: str
    event: Event


@dataclass(frozen=True, slots=True)
class PublishAcked:
    """The final answer to a publish. ``accepted`` is true for ``duplicate:`` refusals too."""

    event_id: str
    accepted: bool
    message: str
    prefix: str | None


@dataclass(frozen=True, slots=True)
class EndOfStoredEvents:
    """``EOSE``: the stored events of this subscription are done; live ones follow."""

    subscription_id: str


@dataclass(frozen=True, slots=True)
class SubscriptionClosed:
    """The relay closed a subscription and the session will not retry it on this connection."""

    subscription_id: str
    message: str
    prefix: str | None


@dataclass(frozen=True, slots=True)
class Notice:
    """A ``NOTICE`` from the relay (human-readable, untrusted)."""

    message: str


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """The relay sent a NIP-42 challenge (answered automatically when the session has keys)."""

    challenge: str


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The relay's OK to our AUTH event."""

    event_id: str
    accepted: bool
    message: str


Happening = (
    EventReceived
    | PublishAcked
    | EndOfStoredEvents
    | SubscriptionClosed
    | Notice
    | AuthChallenge
    | AuthResult
)


# -- state -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Subscription:
    filters: tuple[Filter, ...]
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    newest_created_at: int | None = None
    open: bool = True  # false once the relay CLOSED it on this connection
    eose: bool = False
    awaiting_auth: bool = False
    auth_retried: bool = False


@dataclass(slots=True)
class _Pending:
    event: Event
    retried: bool = False
    awaiting_auth: bool = False
    refusal: tuple[str, str | None] = ("", None)


class RelaySession:
    """The protocol state of one client connection to one relay. Not thread-safe.

    ``relay_url`` (a ``ws://``/``wss://`` URL) goes into AUTH events. ``keys`` (optional:
    ``Keys`` or any other ``Signer``) answers NIP-42 challenges.
    Bounds: ``max_seen_per_subscription`` ids remembered per subscription for de-duplication,
    at most ``max_pending`` publishes waiting for their OK and ``max_subscriptions`` open.
    """

    def __init__(
        self,
        relay_url: str,
        *,
        keys: Signer | None = None,
        verify_events: bool = True,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_seen_per_subscription: int = 10_000,
        max_pending: int = 10_000,
        max_subscriptions: int = 64,
    ) -> None:
        problem = url_problem(relay_url, RELAY_SCHEMES)
        if problem is not None:
            raise MessageError(f"relay url {problem}")
        self.relay_url = relay_url
        self._keys = keys
        self._verify_events = verify_events
        self._max_frame_bytes = max_frame_bytes
        self._max_seen = max_seen_per_subscription
        self._max_pending = max_pending
        self._max_subscriptions = max_subscriptions
        self._subscriptions: dict[str, _Subscription] = {}
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._outgoing: list[str] = []
        self._challenge: str | None = None
        self._auth_in_flight: dict[str, str] = {}  # auth event id -> challenge it answers
        self._auth_sent_for: set[str] = set()
        self._auths_this_connection = 0
        self._authenticated = False

    def __repr__(self) -> str:
        return (
            f"RelaySession({self.relay_url!r}, subscriptions={len(self._subscriptions)}, "
            f"pending={len(self._pending)}, authenticated={self._authenticated})"
        )

    # -- read-only views -----------------------------------------------------------------------

    @property
    def challenge(self) -> str | None:
        """The latest NIP-42 challenge on this connection, if any."""
        return self._challenge

    @property
    def authenticated(self) -> bool:
        """Whether the relay accepted one of our AUTH events on this connection."""
        return self._authenticated

    @property
    def subscription_ids(self) -> tuple[str, ...]:
        """Subscriptions the caller asked for (kept across reconnects)."""
        return tuple(self._subscriptions)

    @property
    def pending_event_ids(self) -> tuple[str, ...]:
        """Publishes still waiting for their final OK, oldest first."""
        return tuple(self._pending)

    def subscription_filters(self, subscription_id: str) -> tuple[Filter, ...] | None:
        """The filters the caller gave for a subscription, or ``None``."""
        sub = self._subscriptions.get(subscription_id)
        return None if sub is None else sub.filters

    def is_open(self, subscription_id: str) -> bool:
        """Whether the subscription exists and the relay has not CLOSED it on this connection."""
        sub = self._subscriptions.get(subscription_id)
        return sub is not None and sub.open

    # -- caller actions ------------------------------------------------------------------------

    def publish(self, event: Event) -> str:
        """Start waiting for the OK to ``event``; returns the ``EVENT`` frame to send."""
        if event.id not in self._pending and len(self._pending) >= self._max_pending:
            raise MessageError(f"more than {self._max_pending} publishes are waiting for an OK")
        frame = encode_event(event)
        self._pending.setdefault(event.id, _Pending(event))
        return frame

    def abandon(self, event_id: str) -> None:
        """Stop waiting for the OK to ``event_id`` (the caller gave up on it)."""
        self._pending.pop(event_id, None)

    def subscribe(self, subscription_id: str, filters: Filter | Sequence[Filter]) -> str:
        """Open or replace a subscription; returns the ``REQ`` frame to send.

        Replacing keeps the ids already seen, so events are still emitted once.
        """
        as_tuple = (filters,) if isinstance(filters, Filter) else tuple(filters)
        frame = encode_req(subscription_id, *as_tuple)  # validates id and filters
        sub = self._subscriptions.get(subscription_id)
        if sub is None:
            if len(self._subscriptions) >= self._max_subscriptions:
                raise MessageError(f"more than {self._max_subscriptions} subscriptions")
            self._subscriptions[subscription_id] = _Subscription(as_tuple)
        else:
            if sub.filters != as_tuple:
                sub.newest_created_at = None
            sub.filters = as_tuple
            sub.open, sub.eose, sub.awaiting_auth, sub.auth_retried = True, False, False, False
        return frame

    def resubscribe(
        self, subscription_id: str, *, slack_s: int = 60, now: int | None = None
    ) -> str:
        """The ``REQ`` frame to request an existing subscription again, ``since`` moved up."""
        sub = self._subscriptions.get(subscription_id)
        if sub is None:
            raise MessageError(f"no subscription {subscription_id!r}")
        sub.open, sub.eose, sub.awaiting_auth = True, False, False
        return encode_req(subscription_id, *self._catch_up_filters(sub, slack_s, now))

    def unsubscribe(self, subscription_id: str) -> str:
        """Forget a subscription; returns the ``CLOSE`` frame to send."""
        frame = encode_close(subscription_id)
        self._subscriptions.pop(subscription_id, None)
        return frame

    def auth(self, keys: Signer | None = None) -> str:
        """The ``AUTH`` frame answering the current challenge, signed with ``keys``.

        Uses the session's keys (or Signer) when none are given. Raises ``MessageError`` when
        there is no challenge or no keys.
        """
        signer = keys if keys is not None else self._keys
        if signer is None:
            raise MessageError("AUTH needs keys")
        if self._challenge is None:
            raise MessageError("the relay has not sent an AUTH challenge")
        event = sign_event(build_auth_event(self.relay_url, self._challenge), signer)
        self._auth_in_flight[event.id] = self._challenge
        self._auth_sent_for.add(self._challenge)
        self._auths_this_connection += 1
        return encode_auth(event)

    def take_outgoing(self) -> list[str]:
        """Frames the session decided to send (AUTH answers, retries); send them in order."""
        frames, self._outgoing = self._outgoing, []
        return frames

    def connection_made(self, *, now: int | None = None, slack_s: int = 60) -> list[str]:
        """A (new) connection is up: returns the ``REQ`` frames for every subscription.

        A subscription that already delivered events asks only for events from the newest
        ``created_at`` seen (capped at ``now`` when given) minus ``slack_s``.
        """
        self._reset_connection_state()
        frames = []
        for subscription_id, sub in self._subscriptions.items():
            sub.open, sub.eose, sub.awaiting_auth, sub.auth_retried = True, False, False, False
            frames.append(encode_req(subscription_id, *self._catch_up_filters(sub, slack_s, now)))
        return frames

    def connection_lost(self) -> list[Event]:
        """The connection is gone: returns the publishes that never got an OK (oldest first).

        Subscriptions are kept for ``connection_made``; auth state is per connection.
        """
        lost = [pending.event for pending in self._pending.values()]
        self._pending.clear()
        self._reset_connection_state()
        for sub in self._subscriptions.values():
            sub.open, sub.eose = False, False
        return lost

    # -- relay input ---------------------------------------------------------------------------

    def receive(self, frame: str | bytes) -> list[Happening]:
        """Feed one frame from the relay; returns what happened (possibly nothing).

        Raises ``MessageError`` or ``EventError`` for a malformed frame.
        """
        message = decode_relay_message(
            frame, max_bytes=self._max_frame_bytes, verify_events=self._verify_events
        )
        if isinstance(message, RelayEvent):
            return self._on_event(message)
        if isinstance(message, RelayOk):
            return self._on_ok(message)
        if isinstance(message, RelayEose):
            sub = self._subscriptions.get(message.subscription_id)
            if sub is None or not sub.open or sub.eose:
                return []
            sub.eose = True
            return [EndOfStoredEvents(message.subscription_id)]
        if isinstance(message, RelayClosed):
            return self._on_closed(message)
        if isinstance(message, RelayNotice):
            return [Notice(message.message)]
        return self._on_auth(message)

    # -- internals -----------------------------------------------------------------------------

    def _reset_connection_state(self) -> None:
        self._challenge = None
        self._authenticated = False
        self._auth_in_flight.clear()
        self._auth_sent_for.clear()
        self._auths_this_connection = 0
        self._outgoing.clear()

    @staticmethod
    def _catch_up_filters(sub: _Subscription, slack_s: int, now: int | None) -> list[Filter]:
        if sub.newest_created_at is None:
            return list(sub.filters)
        newest = sub.newest_created_at if now is None else min(sub.newest_created_at, now)
        since = newest - max(0, slack_s)
        return [f.with_since(max(since, f.since or 0)) for f in sub.filters]

    def _on_event(self, message: RelayEvent) -> list[Happening]:
        sub = self._subscriptions.get(message.subscription_id)
        event = message.event
        if sub is None or not sub.open:
            logger.debug(
                "event for unknown subscription",
                extra={"relay": self.relay_url, "subscription": message.subscription_id[:64]},
            )
            return []
        if event.id in sub.seen:
            sub.seen.move_to_end(event.id)
            return []
        if not any(f.matches(event) for f in sub.filters):
            logger.info(
                "relay sent an event that does not match the subscription; dropped",
                extra={"relay": self.relay_url, "subscription": message.subscription_id},
            )
            return []
        sub.seen[event.id] = None
        while len(sub.seen) > self._max_seen:
            sub.seen.popitem(last=False)
        if sub.newest_created_at is None or event.created_at > sub.newest_created_at:
            sub.newest_created_at = event.created_at
        return [EventReceived(message.subscription_id, event)]

    def _match_pending(self, event_id: str) -> str | None:
        if event_id in self._pending:
            return event_id
        if is_hex64(event_id):
            return None  # a well-formed id we are not waiting for: a late or repeated OK
        # Empty or malformed id: relays answer in order, so it is the oldest still waiting.
        return next((k for k, p in self._pending.items() if not p.awaiting_auth), None)

    def _on_ok(self, message: RelayOk) -> list[Happening]:
        if message.event_id in self._auth_in_flight:
            return self._on_auth_ok(message)
        event_id = self._match_pending(message.event_id)
        if event_id is None:
            logger.debug("OK for an event we are not waiting for", extra={"relay": self.relay_url})
            return []
        pending = self._pending[event_id]
        if (
            not message.accepted
            and message.prefix == "auth-required"
            and self._keys is not None
            and not pending.retried
        ):
            pending.awaiting_auth = True
            pending.refusal = (message.message, message.prefix)
            if self._authenticated:
                self._resend(event_id)
            else:
                self._request_auth()
            return []
        del self._pending[event_id]
        accepted = message.accepted or message.prefix == "duplicate"
        return [PublishAcked(event_id, accepted, message.message, message.prefix)]

    def _on_auth_ok(self, message: RelayOk) -> list[Happening]:
        self._auth_in_flight.pop(message.event_id)
        result: list[Happening] = [AuthResult(message.event_id, message.accepted, message.message)]
        if message.accepted:
            self._authenticated = True
            for event_id in [k for k, p in self._pending.items() if p.awaiting_auth]:
                self._resend(event_id)
            for subscription_id, sub in self._subscriptions.items():
                if sub.awaiting_auth:
                    sub.awaiting_auth, sub.auth_retried, sub.open = False, True, True
                    self._outgoing.append(encode_req(subscription_id, *sub.filters))
            return result
        if self._auth_in_flight:
            return result  # another AUTH may still succeed
        for event_id in [k for k, p in self._pending.items() if p.awaiting_auth]:
            pending = self._pending.pop(event_id)
            result.append(PublishAcked(event_id, False, *pending.refusal))
        for subscription_id, sub in self._subscriptions.items():
            if sub.awaiting_auth:
                sub.awaiting_auth = False
                result.append(SubscriptionClosed(subscription_id, message.message, "auth-required"))
        return result

    def _resend(self, event_id: str) -> None:
        pending = self._pending[event_id]
        pending.retried, pending.awaiting_auth = True, False
        self._pending.move_to_end(event_id)
        self._outgoing.append(encode_event(pending.event))

    def _request_auth(self) -> None:
        """Send an AUTH for the current challenge unless one is already on its way."""
        if (
            self._keys is not None
            and self._challenge is not None
            and self._challenge not in self._auth_sent_for
            and self._auths_this_connection < _MAX_AUTHS_PER_CONNECTION
        ):
            self._outgoing.append(self.auth())

    def _on_closed(self, message: RelayClosed) -> list[Happening]:
        sub = self._subscriptions.get(message.subscription_id)
        if sub is None:
            return []
        sub.open = False
        if message.prefix == "auth-required" and self._keys is not None and not sub.auth_retried:
            sub.awaiting_auth = True
            if self._authenticated:
                sub.awaiting_auth, sub.auth_retried, sub.open = False, True, True
                self._outgoing.append(encode_req(message.subscription_id, *sub.filters))
            else:
                self._request_auth()
            return []
        return [SubscriptionClosed(message.subscription_id, message.message, message.prefix)]

    def _on_auth(self, message: RelayAuth) -> list[Happening]:
        self._challenge = message.challenge
        self._request_auth()
        return [AuthChallenge(message.challenge)]
