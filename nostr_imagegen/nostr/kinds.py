"""One home for event kinds and the protocol's numeric limits.

The kinds this library reads or writes::

    DELETION_KIND          5        NIP-09 deletion request (a customer cancels a job)
    REQUEST_KINDS          5000..5999   NIP-90 job requests
    IMAGE_GENERATION_KIND  5100     the kind 5100 page: image generation
    RESULT_KINDS           6000..6999   NIP-90 job results (request kind + 1000)
    IMAGE_RESULT_KIND      6100
    FEEDBACK_KIND          7000     NIP-90 job feedback
    ZAP_REQUEST_KIND       9734     NIP-57 zap request (signed by the payer, not published)
    ZAP_RECEIPT_KIND       9735     NIP-57 zap receipt (signed by the LNURL server)
    AUTH_KIND              22242    NIP-42 client authentication
    BLOSSOM_AUTH_KIND      24242    Blossom (BUD-11) upload authorization
    NIP98_AUTH_KIND        27235    NIP-98 HTTP authorization
    HANDLER_INFO_KIND      31990    NIP-89 handler information

The ranges are ``range`` objects, so ``5999 in REQUEST_KINDS`` and ``6000 not in
REQUEST_KINDS`` read as the NIP says (rust-nostr once shipped an off-by-one here).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

__all__ = [
    "AUTH_KIND",
    "BLOSSOM_AUTH_KIND",
    "DELETION_KIND",
    "FEEDBACK_KIND",
    "HANDLER_INFO_KIND",
    "IMAGE_GENERATION_KIND",
    "IMAGE_RESULT_KIND",
    "MAX_EVENT_JSON_BYTES",
    "MAX_KIND",
    "MAX_MSATS",
    "MAX_TIMESTAMP",
    "NIP98_AUTH_KIND",
    "REQUEST_KINDS",
    "RESULT_KINDS",
    "RESULT_KIND_OFFSET",
    "ZAP_RECEIPT_KIND",
    "ZAP_REQUEST_KIND",
    "Kind",
    "Timestamp",
    "is_request_kind",
    "is_result_kind",
]

DELETION_KIND = 5
#: NIP-90 job request kinds: 5000 up to and including 5999.
REQUEST_KINDS = range(5000, 6000)
IMAGE_GENERATION_KIND = 5100
#: NIP-90 job result kinds: 6000 up to and including 6999.
RESULT_KINDS = range(6000, 7000)
#: A result's kind is its request's kind plus this.
RESULT_KIND_OFFSET = 1000
IMAGE_RESULT_KIND = IMAGE_GENERATION_KIND + RESULT_KIND_OFFSET
FEEDBACK_KIND = 7000
ZAP_REQUEST_KIND = 9734
ZAP_RECEIPT_KIND = 9735
AUTH_KIND = 22242
BLOSSOM_AUTH_KIND = 24242
NIP98_AUTH_KIND = 27235
HANDLER_INFO_KIND = 31990

#: NIP-01 kinds are 0 to 65535.
MAX_KIND = 65535
#: The largest ``created_at`` accepted: 2**53, the largest integer every JSON reader keeps.
MAX_TIMESTAMP = 2**53
#: A larger event is refused before JSON decoding, counted in UTF-8 bytes (relays commonly
#: cap frames at 128-512 KiB).
MAX_EVENT_JSON_BYTES = 512 * 1024
#: The largest amount in millisats a bid or an amount tag may carry: all bitcoin that will
#: ever exist (21 million BTC), 19 digits.
MAX_MSATS = 21_000_000 * 100_000_000 * 1000

#: An event kind as a pydantic field: a JSON number (not a string), 0 to 65535.
Kind = Annotated[int, Strict(), Field(ge=0, le=MAX_KIND)]
#: Unix seconds as a pydantic field: a JSON number, 0 to 2**53.
Timestamp = Annotated[int, Strict(), Field(ge=0, le=MAX_TIMESTAMP)]


def is_request_kind(kind: int) -> bool:
    """True for the NIP-90 request kinds 5000..5999 (4999 and 6000 are not)."""
    return kind in REQUEST_KINDS


def is_result_kind(kind: int) -> bool:
    """True for the NIP-90 result kinds 6000..6999 (5999 and 7000 are not)."""
    return kind in RESULT_KINDS
