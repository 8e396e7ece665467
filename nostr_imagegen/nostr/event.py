"""NIP-01 events: the model, the one canonical serializer, ids, signing and verification.

The wire form::

    {"id": "<64 hex>", "pubkey": "<64 hex>", "created_at": 1700000000, "kind": 5100,
     "tags": [["i", "a purple ostrich", "text"]], "content": "", "sig": "<128 hex>"}

``id`` is sha256 of the UTF-8 JSON array ``[0,pubkey,created_at,kind,tags,content]`` without
whitespace; ``sig`` is a BIP-340 Schnorr signature of the id bytes.

Build, then sign: builders return an ``UnsignedEvent`` (a template without pubkey, id or sig);
``sign_event(template, keys)`` is the one place that turns a template into an ``Event``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any

from coincurve import PublicKeyXOnly
from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, ValidationError

from nostr_imagegen.errors import EventError, InvalidEventId, InvalidSignature
from nostr_imagegen.nostr.keys import Keys

__all__ = [
    "MAX_EVENT_JSON_BYTES",
    "Event",
    "Tag",
    "UnsignedEvent",
    "compute_event_id",
    "parse_event",
    "serialize_for_id",
    "sign_event",
    "verify_event",
]

#: A larger event is refused before JSON decoding (relays commonly cap frames at 128-512 KiB).
MAX_EVENT_JSON_BYTES = 512 * 1024

Tag = tuple[str, ...]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Hex128 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]
Kind = Annotated[int, Strict(), Field(ge=0, le=65535)]
Timestamp = Annotated[int, Strict(), Field(ge=0, le=2**53)]


# One encoder for every id: json.dumps with options builds a new JSONEncoder per call.
_ID_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def serialize_for_id(
    pubkey: str, created_at: int, kind: int, tags: Sequence[Sequence[str]], content: str
) -> bytes:
    """The canonical NIP-01 serialization whose sha256 is the event id."""
    return _ID_ENCODER.encode([0, pubkey, created_at, kind, tags, content]).encode("utf-8")


def compute_event_id(
    pubkey: str, created_at: int, kind: int, tags: Sequence[Sequence[str]], content: str
) -> str:
    """sha256 of ``serialize_for_id(...)`` as 64 lowercase hex."""
    return hashlib.sha256(serialize_for_id(pubkey, created_at, kind, tags, content)).hexdigest()


class _TagAccess:
    """Read helpers shared by signed events and templates."""

    tags: tuple[Tag, ...]

    def tags_named(self, name: str) -> Iterator[Tag]:
        """Every tag whose first element is ``name``, in order."""
        return (tag for tag in self.tags if tag and tag[0] == name)

    def first_tag(self, name: str) -> Tag | None:
        """The first tag named ``name``, or ``None``."""
        return next(self.tags_named(name), None)

    def tag_value(self, name: str) -> str | None:
        """The second element of the first tag named ``name``, or ``None``."""
        tag = self.first_tag(name)
        return tag[1] if tag is not None and len(tag) > 1 else None


class UnsignedEvent(BaseModel, _TagAccess):
    """An event template: what a builder returns and ``sign_event`` signs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    tags: tuple[Tag, ...] = ()
    content: str = ""
    created_at: Timestamp | None = None


class Event(BaseModel, _TagAccess):
    """A signed NIP-01 event. Instances from ``parse_event`` or ``sign_event`` are verified."""

    # Numbers must be JSON numbers (Strict) and strings JSON strings; arrays become tuples.
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: Hex64
    pubkey: Hex64
    created_at: Timestamp
    kind: Kind
    tags: tuple[Tag, ...]
    content: str
    sig: Hex128

    def to_dict(self) -> dict[str, Any]:
        """The wire form as a plain dict (tags as lists)."""
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": [list(tag) for tag in self.tags],
            "content": self.content,
            "sig": self.sig,
        }

    def to_json(self) -> str:
        """Compact JSON of the wire form (what relays receive and `request` tags carry)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


def sign_event(template: UnsignedEvent, keys: Keys, *, created_at: int | None = None) -> Event:
    """Sign a template with ``keys``: fills pubkey, created_at (now unless given), id and sig."""
    when = created_at if created_at is not None else template.created_at
    if when is None:
        when = int(time.time())
    tags = [list(tag) for tag in template.tags]
    event_id = compute_event_id(keys.public_key, when, template.kind, tags, template.content)
    sig = keys.sign_digest(bytes.fromhex(event_id)).hex()
    return Event.model_construct(
        id=event_id,
        pubkey=keys.public_key,
        created_at=when,
        kind=template.kind,
        tags=template.tags,
        content=template.content,
        sig=sig,
    )


@functools.lru_cache(maxsize=4096)
def _xonly_key(pubkey_hex: str) -> PublicKeyXOnly:
    # Parsing a key costs about a tenth of a verification, and the same customers and
    # providers sign event after event. Keys that fail to parse raise and are not cached.
    return PublicKeyXOnly(bytes.fromhex(pubkey_hex))


def verify_event(event: Event) -> None:
    """Raise ``InvalidEventId`` or ``InvalidSignature`` unless the event checks out."""
    try:
        expected = compute_event_id(
            event.pubkey, event.created_at, event.kind, event.tags, event.content
        )
    except UnicodeEncodeError:
        # Python's json module decodes "\ud800" into a lone surrogate, which UTF-8 cannot hold.
        raise EventError(f"event {event.id} contains text that is not valid Unicode") from None
    if expected != event.id:
        raise InvalidEventId(
            f"event id {event.id} does not match its content (expected {expected})"
        )
    try:
        valid = _xonly_key(event.pubkey).verify(bytes.fromhex(event.sig), bytes.fromhex(event.id))
    except ValueError as exc:
        raise InvalidSignature(
            f"event {event.id} has an invalid pubkey or signature: {exc}"
        ) from exc
    if not valid:
        raise InvalidSignature(f"event {event.id} has a signature that does not verify")


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "event"
    return f"{where}: {first['msg']}"


def parse_event(data: str | bytes | Mapping[str, Any], *, verify: bool = True) -> Event:
    """Parse an event from JSON text or a decoded dict, checking shape, id and signature.

    Raises ``EventError`` (or its subclasses ``InvalidEventId`` / ``InvalidSignature``) naming
    what is wrong. With ``verify=False`` only the shape is checked.
    """
    try:
        if isinstance(data, str | bytes):
            if len(data) > MAX_EVENT_JSON_BYTES:
                raise EventError(f"event JSON is larger than {MAX_EVENT_JSON_BYTES} bytes")
            event = Event.model_validate_json(data)
        elif isinstance(data, Mapping):
            event = Event.model_validate(dict(data))
        else:
            raise EventError(f"an event must be a JSON object, got {type(data).__name__}")
    except ValidationError as exc:
        raise EventError(f"malformed event: {_describe(exc)}") from None
    except RecursionError:
        raise EventError("malformed event: nested too deeply") from None
    if verify:
        verify_event(event)
    return event
