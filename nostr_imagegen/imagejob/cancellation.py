"""Job cancellation: a NIP-09 deletion request (kind 5) by the customer, naming the request.

The wire form::

    {"kind": 5, "pubkey": "<customer pubkey>", "content": "changed my mind",
     "tags": [["e", "<request id>"], ["k", "5100"]]}       # k tags optional

NIP-09 lets anyone publish a deletion request naming any event, and says a client "MUST
validate that each event pubkey referenced in the e tag ... is identical to the deletion
request pubkey": so ``Cancellation.cancels`` is true only for a request by the same key.
``k`` tags are kept for information but do not decide anything (the ``e`` id does).
"""

from __future__ import annotations

from dataclasses import dataclass

from nostr_imagegen.errors import EventError
from nostr_imagegen.imagejob import _answer_tags as wire
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.nostr.hexkeys import is_hex64
from nostr_imagegen.nostr.kinds import DELETION_KIND

__all__ = [
    "DELETION_KIND",
    "MAX_CANCELLED_IDS",
    "MAX_REASON_CHARS",
    "Cancellation",
    "parse_cancellation",
]

#: Only the first this-many distinct event ids of one deletion request are read.
MAX_CANCELLED_IDS = 256
#: The reason (the deletion's content) is cleaned to one line of at most this many characters.
MAX_REASON_CHARS = 280


@dataclass(frozen=True)
class Cancellation:
    """Who asked to delete which events, and why (the reason is cleaned, safe to log)."""

    pubkey: str
    request_ids: tuple[str, ...]
    reason: str
    #: The kinds named in ``k`` tags, if any (informative only).
    kinds: tuple[int, ...] = ()

    def cancels(self, job_or_request: ImageJob | Event) -> bool:
        """True when this deletion names the request and comes from its author (customer)."""
        if isinstance(job_or_request, ImageJob):
            request_id, author = job_or_request.id, job_or_request.customer
        elif isinstance(job_or_request, Event):
            request_id, author = job_or_request.id, job_or_request.pubkey
        else:
            raise EventError(f"expected an ImageJob or Event, got {type(job_or_request).__name__}")
        return author == self.pubkey and request_id in self.request_ids


def parse_cancellation(event: Event) -> Cancellation:
    """Read a kind 5 deletion request; raise ``EventError`` if it is not one or names no event.

    ``e`` values that are not event ids are skipped; ``a`` tags (replaceable events) are not
    job requests and are ignored.
    """
    if event.kind != DELETION_KIND:
        raise EventError(f"kind {event.kind} is not a deletion request ({DELETION_KIND})")
    ids: dict[str, None] = {}
    for tag in event.tags_named("e"):
        if len(tag) > 1 and is_hex64(tag[1].lower()):
            ids.setdefault(tag[1].lower())
            if len(ids) == MAX_CANCELLED_IDS:
                break
    if not ids:
        raise EventError(f"deletion request {event.id} has no e tag naming an event")
    kinds: dict[int, None] = {}
    for tag in event.tags_named("k"):
        if len(tag) > 1 and tag[1].isascii() and tag[1].isdigit() and len(tag[1]) <= 5:
            kinds.setdefault(int(tag[1]))
    return Cancellation(
        pubkey=event.pubkey,
        request_ids=tuple(ids),
        reason=wire.clean_text(event.content, MAX_REASON_CHARS),
        kinds=tuple(kinds)[:MAX_CANCELLED_IDS],
    )
