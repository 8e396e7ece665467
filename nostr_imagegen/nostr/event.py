"""NIP-01 events: the model, the one canonical serializer, ids, signing and verification.

The wire form::

    {"id": "<64 hex>", "pubkey": "<64 hex>", "created_at": 1700000000, "kind": 5100,
     "tags": [["i", "a purple ostrich", "text"]], "content": "", "sig": "<128 hex>"}

``id`` is sha256 of the UTF-8 JSON array ``[0,pubkey,created_at,kind,tags,content]`` without
whitespace; ``sig`` is a BIP-340 Schnorr signature of the id bytes.

Build, then sign: builders return an ``UnsignedEvent`` (a template without pubkey, id or sig);
``sign_event(template, signer)`` is the one place that turns a template into an ``Event``. The
signer is ``Keys`` or any other ``Signer`` (nostr_imagegen.nostr.signer).

``parse_event`` takes what arrives from a relay or a file: JSON text (``str`` or ``bytes``, at
most ``MAX_EVENT_JSON_BYTES`` bytes of UTF-8) or an already decoded ``dict``. Anything else (an
``Event`` already, another library's event object, ``None``) is a programming error and raises
``TypeError`` naming the type; a malformed event raises ``EventError``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from coincurve import PublicKeyXOnly
from pydantic import BaseModel, ConfigDict, ValidationError

from nostr_imagegen.errors import EventError, InvalidEventId, InvalidSignature
from nostr_imagegen.nostr.hexkeys import Hex64, Hex128
from nostr_imagegen.nostr.kinds import MAX_EVENT_JSON_BYTES, Kind, Timestamp

if TYPE_CHECKING:
    from nostr_imagegen.nostr.signer import Signer

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

Tag = tuple[str, ...]

# NIP-01's serialization: no whitespace, non-ASCII text as UTF-8 (not \u escapes).
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


def sign_event(template: UnsignedEvent, signer: Signer, *, created_at: int | None = None) -> Event:
    """Sign ``template`` with ``signer`` (``Keys`` or another ``Signer``) into an ``Event``.

    ``created_at``: this time, else the template's, else now. An event from a Signer other
    than ``Keys`` is checked to be exactly the template, signed by ``signer.public_key``
    (``EventError`` naming the difference, or ``InvalidEventId`` / ``InvalidSignature``).
    """
    when = created_at if created_at is not None else template.created_at
    if when is None:
        when = int(time.time())
    if when != template.created_at:
        template = template.model_copy(update={"created_at": when})
    event = signer.sign_event(template)
    if not _is_own_keys(signer):
        _check_signed(event, template, signer.public_key)
    return event


def _is_own_keys(signer: object) -> bool:
    """Whether ``signer`` is this library's ``Keys``, whose signatures need no checking."""
    from nostr_imagegen.nostr.keys import Keys  # keys.py imports this module

    return isinstance(signer, Keys)


def _check_signed(event: object, template: UnsignedEvent, public_key: str) -> None:
    """Raise unless ``event`` is ``template`` signed by ``public_key`` (for foreign signers)."""
    if not isinstance(event, Event):
        raise EventError(f"the signer returned {type(event).__name__}, not an Event")
    expected = {
        "pubkey": public_key,
        "created_at": template.created_at,
        "kind": template.kind,
        "tags": template.tags,
        "content": template.content,
    }
    for field, value in expected.items():
        if getattr(event, field) != value:
            raise EventError(f"the signer returned an event whose {field} is not the template's")
    verify_event(event)


@functools.lru_cache(maxsize=4096)
def _xonly_key(pubkey_hex: str) -> PublicKeyXOnly:
    # The same customers and providers sign event after event: each key is parsed once.
    # A key that fails to parse raises and is not remembered.
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
    """Parse an event from JSON text (``str`` or ``bytes``) or a decoded dict, checking its
    shape, id and signature.

    Raises ``EventError`` (or its subclasses ``InvalidEventId`` / ``InvalidSignature``) naming
    what is wrong, also for JSON text larger than ``MAX_EVENT_JSON_BYTES`` bytes of UTF-8.
    With ``verify=False`` only the shape is checked. Raises ``TypeError`` for anything that is
    not JSON text or a mapping (an ``Event`` already, another library's event object:
    pass its JSON).
    """
    if isinstance(data, str | bytes):
        if _utf8_size(data) > MAX_EVENT_JSON_BYTES:
            raise EventError(f"event JSON is larger than {MAX_EVENT_JSON_BYTES} bytes")
    elif isinstance(data, Event):
        raise TypeError("parse_event() takes JSON text or a dict; this Event is parsed already")
    elif not isinstance(data, Mapping):
        raise TypeError(
            f"parse_event() takes an event as JSON text (str or bytes) or a dict, got "
            f"{_type_name(data)}; for another library's event object, pass its JSON"
        )
    try:
        if isinstance(data, Mapping):
            event = Event.model_validate(dict(data))
        else:
            event = Event.model_validate_json(data)
    except ValidationError as exc:
        raise EventError(f"malformed event: {_describe(exc)}") from None
    except RecursionError:
        raise EventError("malformed event: nested too deeply") from None
    if verify:
        verify_event(event)
    return event


def _utf8_size(data: str | bytes) -> int:
    """How many bytes ``data`` takes as UTF-8."""
    if isinstance(data, bytes):
        return len(data)
    if len(data) > MAX_EVENT_JSON_BYTES:
        return len(data)  # too large already (a character is at least one byte): not encoded
    return len(data.encode("utf-8", "surrogatepass"))


def _type_name(value: object) -> str:
    """``str``, ``NoneType``, ``nostr_sdk.Event``: the type of ``value``, for messages."""
    kind = type(value)
    module = kind.__module__.split(".")[0]
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
