"""NIP-57 zaps as pure protocol: the zap request a payer signs, the zap receipt an LNURL server
signs once the invoice is paid, and the check that a receipt proves the payment a job asked for.

A zap request (kind 9734, signed by the payer, sent to the LNURL callback, never published)::

    {"kind": 9734, "pubkey": "<payer>", "content": "", "tags": [
        ["relays", "wss://relay.example"], ["amount", "21000"], ["lnurl", "lnurl1..."],
        ["p", "<recipient pubkey>"], ["e", "<job request or feedback id>"], ["k", "7000"]]}

A zap receipt (kind 9735, signed by the LNURL server's ``nostrPubkey``)::

    {"kind": 9735, "pubkey": "<nostrPubkey>", "content": "", "tags": [
        ["p", "<recipient>"], ["P", "<payer>"], ["e", "<job request or feedback id>"],
        ["bolt11", "lnbc210n1..."], ["description", "<the zap request as JSON>"],
        ["preimage", "<hex>"]]}

``validate_zap_receipt`` follows NIP-57 Appendix F, made strict where a DVM is paid on its
word: the receipt's signer is the LNURL server's ``nostrPubkey``; its ``bolt11`` decodes
(``bolt11`` package: the invoice signature is checked) and carries an amount and a description
hash; its ``description`` is a validly signed kind 9734 by the payer whose sha256 is that hash;
the zap request and the receipt both name the job's event (``e``); the zap request's ``amount``
(when present; NIP-57 makes it optional) equals the invoice amount, and the invoice amount is at
least the price. A receipt proves only that the LNURL server says the invoice was paid (NIP-57
Appendix E); the operator trusts their LNURL server. Replays (one receipt presented twice) are
the caller's to refuse: the receipt id and the bolt11 identify a payment.

Nothing here does I/O: the ``bolt11`` package (in the ``service`` extra) decodes bech32 and
checks an ECDSA signature. It is imported when an invoice is decoded, so building zap requests
needs only the core.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from nostr_imagegen.errors import EventError, ZapReceiptInvalid
from nostr_imagegen.nostr.event import Event, UnsignedEvent, parse_event, verify_event
from nostr_imagegen.nostr.hexkeys import is_hex64
from nostr_imagegen.nostr.kinds import MAX_MSATS, ZAP_RECEIPT_KIND, ZAP_REQUEST_KIND
from nostr_imagegen.nostr.urls import RELAY_SCHEMES, url_problem

__all__ = [
    "MAX_BOLT11_CHARS",
    "DecodedInvoice",
    "ZapPayment",
    "build_zap_receipt",
    "build_zap_request",
    "decode_bolt11",
    "validate_zap_receipt",
]

#: A longer bolt11 string is refused before decoding. Real invoices are 200-1500 characters
#: (route hints make them long); a relay frame could otherwise hand the decoder megabytes.
MAX_BOLT11_CHARS = 8192


@dataclass(frozen=True)
class ZapPayment:
    """A zap receipt that passed ``validate_zap_receipt``: who paid how much for which event."""

    receipt_id: str
    amount_msats: int
    payer_pubkey: str
    event_id: str
    bolt11: str


@dataclass(frozen=True)
class DecodedInvoice:
    """What a zap check needs of a bolt11 invoice (amount, description hash, payment hash)."""

    amount_msats: int | None
    description_hash: str | None
    payment_hash: str


def decode_bolt11(invoice: str) -> DecodedInvoice:
    """Decode a bolt11 invoice with the ``bolt11`` package (its signature is checked).

    Raises ``ZapReceiptInvalid`` for anything that is not a well-formed, signed invoice.
    """
    if not isinstance(invoice, str) or not invoice:
        raise ZapReceiptInvalid("the bolt11 invoice is empty")
    if len(invoice) > MAX_BOLT11_CHARS:
        raise ZapReceiptInvalid(f"the bolt11 invoice is longer than {MAX_BOLT11_CHARS} characters")
    try:
        import bolt11 as bolt11_lib
    except ImportError as exc:  # the core installs without the service extra
        raise ImportError(
            "decoding bolt11 invoices needs the bolt11 package "
            "(pip install 'nostr-imagegen[service]')"
        ) from exc
    try:
        decoded = bolt11_lib.decode(invoice)
    except Exception as exc:
        # The decoder meets hostile text: besides its own Bolt11Exception it can raise
        # ValueError, bitstring's ReadError or UnicodeDecodeError. None of them may escape.
        raise ZapReceiptInvalid(f"the bolt11 invoice does not decode: {_short(exc)}") from None
    amount = int(decoded.amount_msat) if decoded.amount_msat is not None else None
    return DecodedInvoice(
        amount_msats=amount,
        description_hash=decoded.description_hash,
        payment_hash=decoded.payment_hash,
    )


def build_zap_request(
    *,
    recipient_pubkey: str,
    event_id: str,
    amount_msats: int,
    relays: Sequence[str],
    lnurl: str | None = None,
    event_kind: int | None = None,
    content: str = "",
) -> UnsignedEvent:
    """The kind 9734 template a payer signs to zap ``event_id`` (a job's request or feedback).

    ``relays``: where the LNURL server publishes the receipt (at least one ``ws(s)://`` URL).
    ``lnurl``: the recipient's bech32 ``lnurl1...`` (recommended by NIP-57). ``event_kind``
    becomes the ``k`` tag. Raises ``EventError`` for a bad key, id, amount or relay.
    """
    if not is_hex64(recipient_pubkey):
        raise EventError(f"recipient pubkey {recipient_pubkey!r} is not 64 lowercase hex")
    if not is_hex64(event_id):
        raise EventError(f"event id {event_id!r} is not 64 lowercase hex")
    if isinstance(amount_msats, bool) or not isinstance(amount_msats, int):
        raise EventError("amount_msats must be an int")
    if not 1 <= amount_msats <= MAX_MSATS:
        raise EventError(f"amount_msats must be 1 to {MAX_MSATS}, got {amount_msats}")
    if isinstance(relays, str) or not relays:
        raise EventError("a zap request needs a list of at least one relay url")
    for relay in relays:
        problem = url_problem(relay, RELAY_SCHEMES)
        if problem is not None:
            raise EventError(f"relay {relay!r} {problem}")
    tags: list[tuple[str, ...]] = [
        ("relays", *relays),
        ("amount", str(amount_msats)),
    ]
    if lnurl is not None:
        tags.append(("lnurl", lnurl))
    tags += [("p", recipient_pubkey), ("e", event_id)]
    if event_kind is not None:
        tags.append(("k", str(event_kind)))
    return UnsignedEvent(kind=ZAP_REQUEST_KIND, tags=tuple(tags), content=content)


def build_zap_receipt(
    zap_request: Event, *, bolt11: str, description: str | None = None, preimage: str | None = None
) -> UnsignedEvent:
    """The kind 9735 template an LNURL server signs once ``bolt11`` is paid (Appendix E).

    ``description`` is the zap request exactly as the invoice's description hash committed to
    it (the ``nostr`` query text the callback received); by default ``zap_request.to_json()``.
    The ``p``, ``e``, ``a`` and ``k`` tags are copied from the request, ``P`` is its signer.
    Sign it with the key whose public half is the LNURL endpoint's ``nostrPubkey``.
    """
    if zap_request.kind != ZAP_REQUEST_KIND:
        raise EventError(f"kind {zap_request.kind} is not a zap request ({ZAP_REQUEST_KIND})")
    tags: list[tuple[str, ...]] = [
        tag for tag in zap_request.tags if tag and tag[0] in ("p", "e", "a", "k") and len(tag) > 1
    ]
    tags.append(("P", zap_request.pubkey))
    tags.append(("bolt11", bolt11))
    tags.append(("description", description if description is not None else zap_request.to_json()))
    if preimage is not None:
        tags.append(("preimage", preimage))
    return UnsignedEvent(kind=ZAP_RECEIPT_KIND, tags=tuple(tags), content="")


def validate_zap_receipt(
    receipt: Event,
    *,
    lnurl_pubkey: str,
    expected_msats: int,
    payer_pubkey: str,
    event_id: str,
    recipient_pubkey: str | None = None,
) -> ZapPayment:
    """Check that ``receipt`` proves ``payer_pubkey`` paid at least ``expected_msats`` for
    ``event_id`` to the LNURL server whose ``nostrPubkey`` is ``lnurl_pubkey``.

    ``recipient_pubkey``: when given, the zap request's ``p`` tag must name it (use it when the
    LNURL server signs receipts for many users with one key, as hosted wallets do).
    Raises ``ZapReceiptInvalid`` whose ``reason`` names the first check that failed.
    """
    if receipt.kind != ZAP_RECEIPT_KIND:
        raise ZapReceiptInvalid(f"kind {receipt.kind} is not a zap receipt ({ZAP_RECEIPT_KIND})")
    try:
        # An Event may have been built without parse_event: the signature is checked here.
        verify_event(receipt)
    except EventError as exc:
        raise ZapReceiptInvalid(f"the zap receipt is not validly signed: {exc}") from None
    if receipt.pubkey != lnurl_pubkey:
        raise ZapReceiptInvalid(
            f"the zap receipt is signed by {receipt.pubkey}, not by the LNURL server's "
            f"nostrPubkey {lnurl_pubkey}"
        )
    receipt_event = _single_value(receipt, "e", "zap receipt")
    if receipt_event != event_id:
        raise ZapReceiptInvalid(f"the zap receipt is for event {receipt_event}, not {event_id}")
    invoice = _single_value(receipt, "bolt11", "zap receipt")
    description = _single_value(receipt, "description", "zap receipt")
    decoded = decode_bolt11(invoice)
    if decoded.amount_msats is None:
        raise ZapReceiptInvalid("the bolt11 invoice has no amount")
    if decoded.description_hash is None:
        raise ZapReceiptInvalid("the bolt11 invoice has no description hash")
    request = _zap_request(description)
    if request.pubkey != payer_pubkey:
        raise ZapReceiptInvalid(
            f"the zap request is signed by {request.pubkey}, not by the customer {payer_pubkey}"
        )
    payer_tag = _optional_value(receipt, "P", "zap receipt")
    if payer_tag is not None and payer_tag != request.pubkey:
        raise ZapReceiptInvalid("the zap receipt's P tag is not the zap request's signer")
    request_event = _single_value(request, "e", "zap request")
    if request_event != event_id:
        raise ZapReceiptInvalid(f"the zap request is for event {request_event}, not {event_id}")
    recipient = _single_value(request, "p", "zap request")
    if recipient_pubkey is not None and recipient != recipient_pubkey:
        raise ZapReceiptInvalid(f"the zap request pays {recipient}, not {recipient_pubkey}")
    if _sha256_hex(description) != decoded.description_hash:
        raise ZapReceiptInvalid(
            "the sha256 of the zap request is not the bolt11 invoice's description hash"
        )
    amount_tag = _optional_value(request, "amount", "zap request")
    if amount_tag is not None:
        requested = _msats(amount_tag)
        if requested != decoded.amount_msats:
            raise ZapReceiptInvalid(
                f"the bolt11 invoice is for {decoded.amount_msats} msats but the zap request "
                f"asked for {requested}"
            )
    if decoded.amount_msats < expected_msats:
        raise ZapReceiptInvalid(
            f"the zap paid {decoded.amount_msats} msats; the job costs {expected_msats}"
        )
    return ZapPayment(
        receipt_id=receipt.id,
        amount_msats=decoded.amount_msats,
        payer_pubkey=request.pubkey,
        event_id=event_id,
        bolt11=invoice,
    )


def _zap_request(description: str) -> Event:
    """The zap request carried in a receipt's ``description`` tag, signature checked."""
    try:
        request = parse_event(description)
    except EventError as exc:
        raise ZapReceiptInvalid(f"the description is not a valid zap request: {exc}") from None
    if request.kind != ZAP_REQUEST_KIND:
        raise ZapReceiptInvalid(
            f"the description is a kind {request.kind} event, not a zap request "
            f"({ZAP_REQUEST_KIND})"
        )
    return request


def _single_value(event: Event, name: str, what: str) -> str:
    """The value of the one ``name`` tag of ``event``; refused when missing or repeated."""
    value = _optional_value(event, name, what)
    if value is None:
        raise ZapReceiptInvalid(f"the {what} has no {name!r} tag")
    return value


def _optional_value(event: Event, name: str, what: str) -> str | None:
    tags = list(event.tags_named(name))
    if not tags:
        return None
    if len(tags) > 1:
        # Two `e` tags would let one payment stand for two jobs; two bolt11 tags, two amounts.
        raise ZapReceiptInvalid(f"the {what} has {len(tags)} {name!r} tags; one is allowed")
    if len(tags[0]) < 2:
        raise ZapReceiptInvalid(f"the {what}'s {name!r} tag has no value")
    return tags[0][1]


def _msats(text: str) -> int:
    """A zap request's ``amount``: millisats as a decimal string."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_MSATS)):
        raise ZapReceiptInvalid(f"the zap request's amount {text[:40]!r} is not a number of msats")
    return int(text)


def _sha256_hex(text: str) -> str:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ZapReceiptInvalid("the description is not valid Unicode") from None
    return hashlib.sha256(data).hexdigest()


def _short(exc: Exception) -> str:
    """An exception as a short message: decoder errors can quote the input at length."""
    text = str(exc) or type(exc).__name__
    return json.dumps(text[:120])[1:-1]
