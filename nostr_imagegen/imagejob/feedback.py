"""Job feedback (kind 7000): build it on the provider side, read it on the customer side.

The wire form, in the order ``build_feedback`` writes the tags::

    {"kind": 7000, "content": "",
     "tags": [["status", "processing", "step 3/20; 15%"],
              ["e", "<request id>", "wss://relay.example"],   # relay hint optional
              ["p", "<customer pubkey>"],
              ["amount", "21000", "lnbc210n1..."],           # required for payment-required
              ["alt", "Image generation job status: processing"],
              ["expiration", "1700003600"]]}                  # optional (NIP-40)

``status`` is one of ``payment-required | processing | error | success | partial``; the third
element is a short human-readable note (``error`` must have one: the reason). Feedback is
public, so that note is one line of at most ``MAX_STATUS_MESSAGE_CHARS`` characters.

Encrypted requests (NIP-90: "If the input params requires input to be encrypted, then
``content`` field will have encrypted payload with ``p`` tag as key") are answered with the
status word, ``e``, ``p``, ``amount`` and ``alt`` in the clear (a client finds and routes
feedback by them, and pays from the clear amount) and the note and content encrypted to the
customer, as a JSON array of tags, with the request's scheme::

    {"kind": 7000, "content": "<encrypted>",
     "tags": [["status", "error"], ["e", "<request id>"], ["p", "<customer>"],
              ["alt", "Image generation job status: error"], ["encrypted"]]}
    decrypted content: [["status","error","lora xyz is not offered"],["content","..."]]

The same tag-list payload is what the nostrdvm framework sends, so its clients read ours.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nostr_imagegen.errors import EncryptionError, EventError
from nostr_imagegen.imagejob import _answer_tags as wire
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.nostr.encryption import decrypt, encrypt
from nostr_imagegen.nostr.event import Event, Tag, UnsignedEvent
from nostr_imagegen.nostr.kinds import FEEDBACK_KIND
from nostr_imagegen.nostr.signer import Signer

__all__ = [
    "MAX_FEEDBACK_CONTENT_CHARS",
    "MAX_STATUS_MESSAGE_CHARS",
    "JobStatus",
    "ParsedFeedback",
    "build_feedback",
    "parse_feedback",
]

logger = logging.getLogger(__name__)

#: The note in a status tag is cut to this many characters (it is public and may quote input).
MAX_STATUS_MESSAGE_CHARS = 280
#: Feedback content (a partial result: a link or two) is refused past this many characters.
MAX_FEEDBACK_CONTENT_CHARS = 16 * 1024
#: A status note read from the network is cut to this many characters before display.
MAX_READ_MESSAGE_CHARS = 2000


class JobStatus(StrEnum):
    """NIP-90 job feedback statuses, with their wire values."""

    PAYMENT_REQUIRED = "payment-required"
    PROCESSING = "processing"
    ERROR = "error"
    SUCCESS = "success"
    PARTIAL = "partial"


def _status_note(
    status: JobStatus, message: str | None, progress: float | None, queue_position: int | None
) -> str | None:
    if (progress is not None or queue_position is not None) and status is not (
        JobStatus.PROCESSING
    ):
        raise EventError("progress and queue_position belong to processing feedback only")
    parts: list[str] = []
    if message is not None:
        if not isinstance(message, str):
            raise EventError("message must be a str")
        parts.append(message)
    if queue_position is not None:
        if isinstance(queue_position, bool) or not isinstance(queue_position, int):
            raise EventError("queue_position must be an int")
        if queue_position < 1:
            raise EventError("queue_position counts from 1")
        parts.append(f"queued: position {queue_position}")
    if progress is not None:
        if isinstance(progress, bool) or not isinstance(progress, int | float):
            raise EventError("progress must be a number between 0 and 1")
        if not 0.0 <= progress <= 1.0:
            raise EventError("progress must be between 0 and 1")
        parts.append(f"{round(progress * 100)}%")
    note = wire.clean_text("; ".join(parts), MAX_STATUS_MESSAGE_CHARS)
    return note or None


def build_feedback(
    request: Event | ImageJob,
    status: JobStatus,
    *,
    message: str | None = None,
    content: str = "",
    amount_msats: int | None = None,
    bolt11: str | None = None,
    relay_hint: str | None = None,
    expiration: int | None = None,
    progress: float | None = None,
    queue_position: int | None = None,
    alt: str | None = None,
    keys: Signer | None = None,
) -> UnsignedEvent:
    """A kind 7000 feedback template answering ``request`` (see the module docstring).

    - ``message``: a short note for the status tag, cleaned to one line and cut to
      ``MAX_STATUS_MESSAGE_CHARS``. Required (the reason) for ``error``.
    - ``amount_msats`` / ``bolt11``: the ``amount`` tag; required for ``payment-required``.
    - ``progress`` (0..1, written as a percentage) and ``queue_position`` (from 1, written
      as ``queued: position N``): only with ``processing``; joined to ``message`` with ``; ``.
    - ``content``: usually empty; a partial result (links) for ``partial``.
    - ``keys``: the provider's ``Keys`` or other ``Signer``, required when the request was
      encrypted (the note and content are then encrypted to the customer;
      ``EncryptionError`` without them).
    """
    ref = wire.request_ref(request)
    try:
        status = JobStatus(status)
    except ValueError:
        raise EventError(f"unknown job status {status!r}") from None
    note = _status_note(status, message, progress, queue_position)
    if status is JobStatus.ERROR and note is None:
        raise EventError("error feedback needs a message saying why the job failed")
    if status is JobStatus.PAYMENT_REQUIRED and amount_msats is None:
        raise EventError("payment-required feedback needs amount_msats")
    if not isinstance(content, str) or len(content) > MAX_FEEDBACK_CONTENT_CHARS:
        raise EventError(f"content must be a str of at most {MAX_FEEDBACK_CONTENT_CHARS} chars")
    amount = wire.amount_tag(amount_msats, bolt11)
    alt_text = wire.clean_text(
        alt if alt is not None else f"Image generation job status: {status.value}",
        MAX_STATUS_MESSAGE_CHARS,
    )
    expires = wire.expiration_tag(expiration)
    e_tag = wire.e_tag(ref.id, relay_hint)

    if ref.encryption is None:
        status_tag: Tag = (
            ("status", status.value) if note is None else ("status", status.value, note)
        )
        body = content
    else:
        if keys is None:
            raise EncryptionError("feedback to an encrypted request needs the provider's keys")
        private: list[list[str]] = [["status", status.value] + ([note] if note else [])]
        if amount is not None:
            private.append(list(amount))
        if content:
            private.append(["content", content])
        payload = json.dumps(private, separators=(",", ":"), ensure_ascii=False)
        status_tag = ("status", status.value)
        body = encrypt(payload, keys, ref.customer, ref.encryption)

    tags: list[Tag] = [status_tag, e_tag, ("p", ref.customer)]
    if amount is not None:
        tags.append(amount)
    tags.append(("alt", alt_text))
    if expires is not None:
        tags.append(expires)
    if ref.encryption is not None:
        tags.append(("encrypted",))
    return UnsignedEvent(kind=FEEDBACK_KIND, tags=tuple(tags), content=body)


@dataclass(frozen=True)
class ParsedFeedback:
    """A kind 7000 event as the customer reads it.

    ``status`` is None for a status word outside NIP-90's five (some providers send their own,
    such as ``payment-rejected``); ``raw_status`` always holds the word as sent.
    """

    request_id: str
    provider: str
    status: JobStatus | None
    raw_status: str
    message: str | None
    amount_msats: int | None
    bolt11: str | None
    content: str
    encrypted: bool


def _private_tags(plaintext: str) -> list[list[str]] | None:
    """The decrypted payload as a list of string tags, or None when it is not one."""
    if not plaintext.lstrip().startswith("["):
        return None
    try:
        data: Any = json.loads(plaintext)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, list) or not all(
        isinstance(tag, list) and tag and all(isinstance(x, str) for x in tag) for tag in data
    ):
        return None
    return data


def parse_feedback(event: Event, *, keys: Signer | None = None) -> ParsedFeedback:
    """Read a kind 7000 feedback event (customer side).

    An encrypted one is decrypted with ``keys`` (the customer's ``Keys`` or other
    ``Signer``); without keys, only what is
    in the clear is returned (``message`` None, ``content`` empty). Notes are cleaned to one
    line before they are returned, so they are safe to print.
    """
    if event.kind != FEEDBACK_KIND:
        raise EventError(f"kind {event.kind} is not job feedback ({FEEDBACK_KIND})")
    status_tag: Tag | None = event.first_tag("status")
    amount_tag = event.first_tag("amount")
    e_tag = event.first_tag("e")
    content = event.content
    encrypted = event.first_tag("encrypted") is not None
    if encrypted:
        content = ""
        if keys is not None:
            plaintext, _scheme = decrypt(event.content, keys, event.pubkey)
            private = _private_tags(plaintext)
            if private is None:
                content = plaintext
            else:
                # Tags inside the payload win; some providers keep even `e` in there.
                inner = {tag[0]: tuple(tag) for tag in reversed(private)}
                status_tag = inner.get("status", status_tag)
                amount_tag = inner.get("amount", amount_tag)
                e_tag = e_tag or inner.get("e")
                content_tag = inner.get("content")
                content = content_tag[1] if content_tag and len(content_tag) > 1 else ""
        else:
            logger.debug("feedback %s is encrypted and no keys were given", event.id)
    request_id = wire.request_id_from(e_tag, event)
    if status_tag is None or len(status_tag) < 2:
        raise EventError(f"feedback {event.id} has no status tag")
    raw_status = wire.clean_text(status_tag[1], 64)
    try:
        status: JobStatus | None = JobStatus(raw_status)
    except ValueError:
        status = None
    message = None
    if len(status_tag) > 2:
        message = wire.clean_text(status_tag[2], MAX_READ_MESSAGE_CHARS) or None
    amount_msats, bolt11 = wire.parse_amount(amount_tag) if amount_tag else (None, None)
    return ParsedFeedback(
        request_id=request_id,
        provider=event.pubkey,
        status=status,
        raw_status=raw_status,
        message=message,
        amount_msats=amount_msats,
        bolt11=bolt11,
        content=content,
        encrypted=encrypted,
    )
