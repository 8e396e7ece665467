"""NIP-01 / NIP-42 relay wire messages: filters, encoders and one strict decoder. No I/O.

Client to relay (the encoders return the JSON text frame to send)::

    ["EVENT", <event>]                                encode_event(event)
    ["REQ", "<sub id>", <filter>, <filter>...]        encode_req("jobs", Filter(kinds=[5100]))
    ["CLOSE", "<sub id>"]                             encode_close("jobs")
    ["AUTH", <signed kind 22242 event>]               encode_auth(auth_event)

Relay to client (``decode_relay_message(frame)`` returns one typed value)::

    ["EVENT", "<sub id>", <event>]                    RelayEvent
    ["OK", "<event id>", true|false, "<prefix>: msg"] RelayOk
    ["EOSE", "<sub id>"]                              RelayEose
    ["CLOSED", "<sub id>", "<prefix>: msg"]           RelayClosed
    ["NOTICE", "<msg>"]                               RelayNotice
    ["AUTH", "<challenge>"]                           RelayAuth

A filter on the wire::

    {"ids": [...], "authors": [...], "kinds": [5100], "#p": ["<hex>"], "since": 1700000000,
     "until": 1700003600, "limit": 50}

Frames come from the network and are hostile: the decoder bounds their size, checks every
element's type and raises only ``MessageError`` (a malformed frame) or ``EventError`` (a bad
event inside an ``EVENT`` frame), never anything else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    model_validator,
)

from nostr_imagegen.errors import EventError, MessageError
from nostr_imagegen.nostr.event import Event, parse_event
from nostr_imagegen.nostr.hexkeys import Hex64, is_hex64
from nostr_imagegen.nostr.kinds import AUTH_KIND, MAX_EVENT_JSON_BYTES, Kind, Timestamp

__all__ = [
    "KNOWN_PREFIXES",
    "MAX_AUTH_CHALLENGE_CHARS",
    "MAX_FILTER_VALUES",
    "MAX_FRAME_BYTES",
    "MAX_SUBSCRIPTION_ID_CHARS",
    "Filter",
    "RelayAuth",
    "RelayClosed",
    "RelayEose",
    "RelayEvent",
    "RelayMessage",
    "RelayNotice",
    "RelayOk",
    "decode_relay_message",
    "encode_auth",
    "encode_close",
    "encode_event",
    "encode_req",
    "split_prefix",
]

#: Frames larger than this are refused before JSON decoding.
MAX_FRAME_BYTES = MAX_EVENT_JSON_BYTES
#: NIP-01: a subscription id is a non-empty string of at most 64 characters.
MAX_SUBSCRIPTION_ID_CHARS = 64
#: The most values one filter list (ids, authors, kinds, one tag) may hold.
MAX_FILTER_VALUES = 1000
#: A NIP-42 challenge longer than this is refused (we would sign it into an event).
MAX_AUTH_CHALLENGE_CHARS = 1024
#: The machine-readable prefixes NIP-01 and NIP-42 define for OK and CLOSED messages.
KNOWN_PREFIXES = frozenset(
    {
        "duplicate",
        "pow",
        "blocked",
        "rate-limited",
        "invalid",
        "restricted",
        "auth-required",
        "error",
        "mute",
        "unsupported",
    }
)

_PREFIX_RE = re.compile(r"([a-z][a-z0-9_-]{0,31}):")
_TAG_LETTER_RE = re.compile(r"[a-zA-Z]")

TagValue = Annotated[str, StringConstraints(max_length=1024)]


def split_prefix(message: str) -> str | None:
    """The machine-readable prefix of an OK / CLOSED message, or ``None``.

    ``split_prefix("duplicate: already have it") == "duplicate"``. Any single lowercase word
    before a colon counts (relays invent their own, e.g. ``rejected:``); compare with
    ``KNOWN_PREFIXES`` to tell the standard ones.
    """
    match = _PREFIX_RE.match(message)
    return match.group(1) if match else None


def _check_subscription_id(subscription_id: object) -> str:
    if not isinstance(subscription_id, str) or not subscription_id:
        raise MessageError("a subscription id must be a non-empty string")
    if len(subscription_id) > MAX_SUBSCRIPTION_ID_CHARS:
        raise MessageError(
            f"a subscription id has at most {MAX_SUBSCRIPTION_ID_CHARS} characters, "
            f"got {len(subscription_id)}"
        )
    return subscription_id


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


class Filter(BaseModel):
    """A NIP-01 subscription filter (frozen). Every condition given must match.

    >>> Filter(kinds=[5100], tags={"p": ["<64 hex>"]}, since=1700000000).to_dict()
    {'kinds': [5100], 'since': 1700000000, '#p': ['<64 hex>']}

    Tag filters are keyed by their single letter (``"p"``, or ``"#p"`` as on the wire). Lists
    must be non-empty (an empty list means different things to different relays) and hold at
    most ``MAX_FILTER_VALUES`` values; ``ids``, ``authors``, ``#e`` and ``#p`` values are 64
    lowercase hex. Bad input raises ``MessageError``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ids: tuple[Hex64, ...] | None = Field(default=None, min_length=1, max_length=MAX_FILTER_VALUES)
    authors: tuple[Hex64, ...] | None = Field(
        default=None, min_length=1, max_length=MAX_FILTER_VALUES
    )
    kinds: tuple[Kind, ...] | None = Field(default=None, min_length=1, max_length=MAX_FILTER_VALUES)
    since: Timestamp | None = None
    until: Timestamp | None = None
    limit: Annotated[int, Strict(), Field(ge=0, le=100_000)] | None = None
    #: ``((letter, values), ...)`` sorted by letter, so equal filters compare and hash equal.
    tags: tuple[tuple[str, tuple[TagValue, ...]], ...] = ()

    def __init__(
        self,
        *,
        ids: Iterable[str] | None = None,
        authors: Iterable[str] | None = None,
        kinds: Iterable[int] | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
        tags: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        data: dict[str, Any] = {
            "ids": None if ids is None else _as_tuple(ids, "ids"),
            "authors": None if authors is None else _as_tuple(authors, "authors"),
            "kinds": None if kinds is None else _as_tuple(kinds, "kinds"),
            "since": since,
            "until": until,
            "limit": limit,
            "tags": _normalize_tags(tags or {}),
        }
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise MessageError(f"invalid filter: {_describe(exc)}") from None

    @model_validator(mode="after")
    def _check(self) -> Filter:
        # An after-validator, so model_validate and model_copy(validate) keep these too.
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError(f"since {self.since} is after until {self.until}")
        for letter, values in self.tags:
            if letter in ("e", "p") and not all(is_hex64(v) for v in values):
                raise ValueError(f"#{letter} values must be 64 lowercase hex")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Filter:
        """Build from the wire form (``{"kinds": [1], "#e": [...]}``); raises ``MessageError``."""
        if not isinstance(data, Mapping):
            raise MessageError("a filter must be a JSON object")
        known = {"ids", "authors", "kinds", "since", "until", "limit"}
        tags: dict[str, Any] = {}
        plain: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(key, str) and key.startswith("#"):
                tags[key] = value
            elif key in known:
                plain[key] = value
            else:
                raise MessageError(f"invalid filter: unknown field {key!r}")
        for key in ("ids", "authors", "kinds"):
            if key in plain and (plain[key] is None or isinstance(plain[key], str | bytes)):
                raise MessageError(f"invalid filter: {key} must be a list")
        return cls(tags=tags, **plain)

    def tag_values(self, letter: str) -> tuple[str, ...] | None:
        """The values of the ``#letter`` condition, or ``None`` when there is none."""
        return next((values for name, values in self.tags if name == letter), None)

    def with_since(self, since: int) -> Filter:
        """A copy whose ``since`` is ``since``, clamped to ``0..until`` so it stays valid."""
        since = min(max(0, since), 2**53 if self.until is None else self.until)
        return self.model_copy(update={"since": since})

    def to_dict(self) -> dict[str, Any]:
        """The wire form: only the conditions given, tag filters as ``"#x"`` keys."""
        out: dict[str, Any] = {}
        if self.ids is not None:
            out["ids"] = list(self.ids)
        if self.authors is not None:
            out["authors"] = list(self.authors)
        if self.kinds is not None:
            out["kinds"] = list(self.kinds)
        if self.since is not None:
            out["since"] = self.since
        if self.until is not None:
            out["until"] = self.until
        if self.limit is not None:
            out["limit"] = self.limit
        for letter, values in self.tags:
            out[f"#{letter}"] = list(values)
        return out

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes this filter (``limit`` is ignored, as for live events).

        Tag conditions look at the first value of each tag, the one relays index.
        """
        if self.ids is not None and event.id not in self.ids:
            return False
        if self.authors is not None and event.pubkey not in self.authors:
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.since is not None and event.created_at < self.since:
            return False
        if self.until is not None and event.created_at > self.until:
            return False
        for letter, values in self.tags:
            wanted = set(values)
            if not any(len(t) > 1 and t[0] == letter and t[1] in wanted for t in event.tags):
                return False
        return True


def _as_tuple(values: Iterable[Any], name: str) -> tuple[Any, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise MessageError(f"invalid filter: {name} must be a list")
    out = []
    for value in values:
        out.append(value)
        if len(out) > MAX_FILTER_VALUES:
            raise MessageError(f"invalid filter: {name} holds more than {MAX_FILTER_VALUES} values")
    return tuple(out)


def _normalize_tags(tags: Mapping[str, Iterable[str]]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(tags, Mapping):
        raise MessageError("invalid filter: tags must map a letter to a list of values")
    out: dict[str, tuple[Any, ...]] = {}
    for key, values in tags.items():
        letter = key[1:] if isinstance(key, str) and key.startswith("#") else key
        if not isinstance(letter, str) or not _TAG_LETTER_RE.fullmatch(letter):
            raise MessageError(f"invalid filter: tag filter {key!r} is not one letter a-z or A-Z")
        if letter in out:
            raise MessageError(f"invalid filter: tag filter #{letter} given twice")
        as_tuple = _as_tuple(values, f"#{letter}")
        if not as_tuple:
            raise MessageError(f"invalid filter: #{letter} must hold at least one value")
        out[letter] = as_tuple
    return tuple(sorted(out.items()))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- client to relay ---------------------------------------------------------------------------


def encode_event(event: Event) -> str:
    """``["EVENT", <event>]``: publish a signed event."""
    return _dumps(["EVENT", event.to_dict()])


def encode_req(subscription_id: str, *filters: Filter) -> str:
    """``["REQ", "<sub id>", <filter>...]``: open (or replace) a subscription."""
    _check_subscription_id(subscription_id)
    if not filters:
        raise MessageError("a REQ needs at least one filter")
    for item in filters:
        if not isinstance(item, Filter):
            raise MessageError(f"a REQ takes Filter objects, got {type(item).__name__}")
    return _dumps(["REQ", subscription_id, *(item.to_dict() for item in filters)])


def encode_close(subscription_id: str) -> str:
    """``["CLOSE", "<sub id>"]``: end a subscription."""
    return _dumps(["CLOSE", _check_subscription_id(subscription_id)])


def encode_auth(event: Event) -> str:
    """``["AUTH", <signed kind 22242 event>]``: answer a NIP-42 challenge."""
    if event.kind != AUTH_KIND:
        raise MessageError(f"an AUTH event must be kind {AUTH_KIND}, got {event.kind}")
    return _dumps(["AUTH", event.to_dict()])


# -- relay to client ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayEvent:
    """``["EVENT", sub_id, event]``: an event for one of our subscriptions."""

    subscription_id: str
    event: Event


@dataclass(frozen=True, slots=True)
class RelayOk:
    """``["OK", event_id, accepted, message]``: the answer to an EVENT or AUTH we sent.

    ``event_id`` is exactly what the relay sent: some relays send ``""`` for a rejected event.
    ``prefix`` is the machine-readable word before the first colon of ``message``, if any.
    """

    event_id: str
    accepted: bool
    message: str
    prefix: str | None


@dataclass(frozen=True, slots=True)
class RelayEose:
    """``["EOSE", sub_id]``: stored events are done, live ones follow."""

    subscription_id: str


@dataclass(frozen=True, slots=True)
class RelayClosed:
    """``["CLOSED", sub_id, message]``: the relay ended or refused a subscription."""

    subscription_id: str
    message: str
    prefix: str | None


@dataclass(frozen=True, slots=True)
class RelayNotice:
    """``["NOTICE", message]``: a human-readable note."""

    message: str


@dataclass(frozen=True, slots=True)
class RelayAuth:
    """``["AUTH", challenge]``: the relay asks for NIP-42 authentication."""

    challenge: str


RelayMessage = RelayEvent | RelayOk | RelayEose | RelayClosed | RelayNotice | RelayAuth


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise MessageError(f"{what} must be a string, got {type(value).__name__}")
    if not value.isascii():
        # JSON may escape lone surrogates ("\\ud800"); they cannot be re-encoded as UTF-8.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MessageError(f"{what} is not valid Unicode") from None
    return value


def _arity(frame: list[Any], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(frame) <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise MessageError(f"a {frame[0]} message has {expected} elements, got {len(frame)}")


def decode_relay_message(
    frame: str | bytes, *, max_bytes: int = MAX_FRAME_BYTES, verify_events: bool = True
) -> RelayMessage:
    """Decode one relay-to-client frame into a typed message.

    Raises ``MessageError`` when the frame is oversized, not UTF-8 JSON, not an array, of an
    unknown type or of the wrong shape; ``EventError`` when the event in an ``EVENT`` frame is
    malformed or (with ``verify_events``) its id or signature is wrong.

    Tolerated, because deployed relays send them: an ``OK`` or ``CLOSED`` without its message
    (read as ``""``), and any string as an ``OK``'s event id (matching is the caller's job).
    """
    if not isinstance(frame, str | bytes):
        raise MessageError(f"a frame must be text or bytes, got {type(frame).__name__}")
    if isinstance(frame, bytes) or len(frame) > max_bytes:
        size = len(frame)  # a str holds at least one byte per character
    else:
        size = len(frame.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise MessageError(f"frame of {size} bytes is larger than the {max_bytes} byte limit")
    try:
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        data = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MessageError(f"frame is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(data, list) or not data:
        raise MessageError("a relay message must be a non-empty JSON array")
    kind = data[0]
    if kind == "EVENT":
        _arity(data, 3)
        subscription_id = _string(data[1], "EVENT subscription id")
        if not isinstance(data[2], dict):
            raise EventError("malformed event: an event must be a JSON object")
        try:
            event = parse_event(data[2], verify=verify_events)
        except UnicodeError:
            # An escaped lone surrogate cannot be serialized for the id check.
            raise EventError("malformed event: a string is not valid Unicode") from None
        return RelayEvent(subscription_id, event)
    if kind == "OK":
        _arity(data, 3, 4)
        event_id = _string(data[1], "OK event id")
        if not isinstance(data[2], bool):
            raise MessageError("OK's third element must be true or false")
        message = _string(data[3], "OK message") if len(data) == 4 else ""
        return RelayOk(event_id, data[2], message, split_prefix(message))
    if kind == "EOSE":
        _arity(data, 2)
        return RelayEose(_string(data[1], "EOSE subscription id"))
    if kind == "CLOSED":
        _arity(data, 2, 3)
        subscription_id = _string(data[1], "CLOSED subscription id")
        message = _string(data[2], "CLOSED message") if len(data) == 3 else ""
        return RelayClosed(subscription_id, message, split_prefix(message))
    if kind == "NOTICE":
        _arity(data, 2)
        return RelayNotice(_string(data[1], "NOTICE message"))
    if kind == "AUTH":
        _arity(data, 2)
        challenge = _string(data[1], "AUTH challenge")
        if not challenge or len(challenge) > MAX_AUTH_CHALLENGE_CHARS:
            raise MessageError(
                f"an AUTH challenge has 1 to {MAX_AUTH_CHALLENGE_CHARS} characters, "
                f"got {len(challenge)}"
            )
        return RelayAuth(challenge)
    if isinstance(kind, str):
        raise MessageError(f"unknown relay message type {kind[:32]!r}")
    raise MessageError("a relay message must start with its type as a string")
