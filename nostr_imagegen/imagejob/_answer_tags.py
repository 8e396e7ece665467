"""Tag helpers shared by the answer builders and parsers (results, feedback, cancellation).

The tags they make, as on the wire::

    ["e", "<request id>", "wss://relay.example"]     # relay hint optional
    ["p", "<customer pubkey>"]
    ["amount", "21000", "lnbc210n1..."]              # millisats; bolt11 optional
    ["alt", "Image generation result"]               # NIP-31
    ["expiration", "1700003600"]                     # NIP-40
    ["encrypted"]

Private to ``nostr_imagegen.imagejob``: the public names live in ``results``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from nostr_imagegen.errors import EncryptionError, EventError
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.nostr.encryption import EncryptionScheme, detect_scheme
from nostr_imagegen.nostr.event import Event, Tag
from nostr_imagegen.nostr.hexkeys import is_hex64
from nostr_imagegen.nostr.kinds import MAX_MSATS, REQUEST_KINDS
from nostr_imagegen.nostr.urls import RELAY_SCHEMES, url_problem

__all__: list[str] = []

#: A bolt11 invoice longer than this is refused (real ones are a few hundred characters).
MAX_BOLT11_CHARS = 4096

_BOLT11 = re.compile(r"ln[0-9a-z]+")
_DIGITS = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class RequestRef:
    """What an answer needs to know about the request it answers."""

    id: str
    customer: str
    kind: int
    #: The scheme to encrypt answers with, or None when the request was in the clear.
    encryption: EncryptionScheme | None


def request_ref(request: Event | ImageJob) -> RequestRef:
    """The id, customer, kind and encryption of a request given as an event or a parsed job.

    A raw event marked ``["encrypted"]`` is answered with the scheme its content uses; when
    that cannot be told (the payload is damaged) NIP-04 is used, the scheme NIP-90 names.
    """
    if isinstance(request, ImageJob):
        ref = RequestRef(request.id, request.customer, request.kind, request.encryption)
    elif isinstance(request, Event):
        scheme: EncryptionScheme | None = None
        if request.first_tag("encrypted") is not None:
            try:
                scheme = detect_scheme(request.content)
            except EncryptionError:
                scheme = EncryptionScheme.NIP04
        ref = RequestRef(request.id, request.pubkey, request.kind, scheme)
    else:
        raise EventError(f"expected a request Event or ImageJob, got {type(request).__name__}")
    check_request_kind(ref.kind)
    return ref


def check_request_kind(kind: int) -> None:
    """Raise ``EventError`` unless ``kind`` is a NIP-90 job request kind (5000..5999)."""
    if kind not in REQUEST_KINDS:
        raise EventError(
            f"kind {kind} is not a NIP-90 job request kind "
            f"({REQUEST_KINDS.start}..{REQUEST_KINDS.stop - 1})"
        )


def clean_text(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters: anything unprintable becomes a space.

    Used for every human-readable string that goes into a public tag, and for text read
    from the network before anyone displays it: no terminal escapes, no bidi overrides, no
    fake extra lines. Longer text is cut and ends with ``…``.
    """
    cap = 8 * limit  # never walk an unbounded string character by character
    cut = len(text) > cap
    printable = "".join(ch if ch.isprintable() else " " for ch in text[:cap])
    flat = " ".join(printable.split())
    if len(flat) <= limit and not cut:
        return flat
    return flat[: limit - 1].rstrip() + "…"


def check_url(url: str, what: str, schemes: Collection[str]) -> str:
    """Return ``url`` if it is a URL with one of ``schemes`` (nostr_imagegen.nostr.urls)."""
    problem = url_problem(url, schemes)
    if problem is not None:
        raise EventError(f"{what} {problem}")
    return url


def e_tag(request_id: str, relay_hint: str | None) -> Tag:
    """``["e", id]`` or ``["e", id, relay_hint]``."""
    if relay_hint is None:
        return ("e", request_id)
    return ("e", request_id, check_url(relay_hint, "relay hint", RELAY_SCHEMES))


def amount_tag(amount_msats: int | None, bolt11: str | None) -> Tag | None:
    """``["amount", msats]`` or ``["amount", msats, bolt11]``; None when there is no amount."""
    if amount_msats is None:
        if bolt11 is not None:
            raise EventError("a bolt11 invoice needs amount_msats beside it")
        return None
    if isinstance(amount_msats, bool) or not isinstance(amount_msats, int):
        raise EventError("amount_msats must be an int")
    if not 0 <= amount_msats <= MAX_MSATS:
        raise EventError(f"amount_msats must be between 0 and {MAX_MSATS}")
    if bolt11 is None:
        return ("amount", str(amount_msats))
    return ("amount", str(amount_msats), check_bolt11(bolt11))


def check_bolt11(bolt11: str) -> str:
    """Return ``bolt11`` if it looks like a lowercase bolt11 invoice of bounded length."""
    if not isinstance(bolt11, str) or len(bolt11) > MAX_BOLT11_CHARS:
        raise EventError(f"bolt11 must be a string of at most {MAX_BOLT11_CHARS} characters")
    if not _BOLT11.fullmatch(bolt11):
        raise EventError("bolt11 must be a lowercase invoice starting with 'ln'")
    return bolt11


def parse_amount(tag: Tag) -> tuple[int, str | None]:
    """Read ``["amount", msats, bolt11?]`` from the network; an empty bolt11 counts as none."""
    if len(tag) < 2 or not _DIGITS.fullmatch(tag[1]) or int(tag[1]) > MAX_MSATS:
        raise EventError("amount tag must carry a whole number of millisats")
    bolt11 = tag[2].strip().lower() if len(tag) > 2 and tag[2].strip() else None
    return int(tag[1]), check_bolt11(bolt11) if bolt11 is not None else None


def expiration_tag(expiration: int | None) -> Tag | None:
    """``["expiration", "<unix seconds>"]`` (NIP-40), or None."""
    if expiration is None:
        return None
    if isinstance(expiration, bool) or not isinstance(expiration, int) or expiration < 0:
        raise EventError("expiration must be a non-negative int (unix seconds)")
    return ("expiration", str(expiration))


def request_id_from(tag: Tag | None, event: Event) -> str:
    """The request id in an ``e`` tag of a result or feedback ``event`` (64 lowercase hex)."""
    if tag is None or len(tag) < 2:
        raise EventError(f"kind {event.kind} event {event.id} has no e tag naming the request")
    value = tag[1].lower()
    if not is_hex64(value):
        raise EventError(f"kind {event.kind} event {event.id} has an e tag that is not an id")
    return value
