"""What every Lightning invoice backend offers the payment flow, and the invoice it issues.

A backend (``LnbitsBackend``, ``NwcBackend``, or an operator's own) issues an invoice for
an amount and says when it is paid. The flow puts the invoice in the `payment-required`
feedback::

    ["status", "payment-required"]
    ["amount", "21000", "lnbc210n1p4..."]

An invoice a backend hands back is decoded (with the ``bolt11`` package, never by hand)
and checked against what was asked: a wallet that answers with another amount or another
payment hash is a ``PaymentError``, not an invoice sent to a customer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from nostr_imagegen.errors import PaymentError
from nostr_imagegen.nostr.kinds import MAX_MSATS

__all__ = ["Invoice", "InvoiceBackend", "decode_invoice", "whole_sats"]

#: Longer than any wallet keeps a bolt11 string; refused before decoding.
MAX_BOLT11_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Invoice:
    """A bolt11 invoice issued for a job: what the ledger keeps and the feedback carries."""

    bolt11: str
    payment_hash: str
    amount_msats: int
    #: Unix time after which the invoice can no longer be paid.
    expires_at: float


class InvoiceBackend(Protocol):
    """A wallet that issues invoices and reports their settlement.

    ``create_invoice`` raises ``PaymentError`` when the wallet fails; ``is_paid`` asks the
    wallet (authenticated: it is the only proof that counts); ``wait_paid`` returns True
    once paid, False at ``timeout_s``; ``aclose`` releases connections.
    """

    async def create_invoice(self, amount_msats: int, *, memo: str, expiry_s: int) -> Invoice: ...

    async def is_paid(self, payment_hash: str) -> bool: ...

    async def wait_paid(self, invoice: Invoice, *, timeout_s: float) -> bool: ...

    async def aclose(self) -> None: ...


def whole_sats(amount_msats: int) -> int:
    """The amount in whole sats, rounded up (wallets that invoice in sats never undercharge)."""
    check_amount(amount_msats)
    return math.ceil(amount_msats / 1000)


def check_amount(amount_msats: int) -> None:
    """``PaymentError`` for an amount no invoice should carry (not positive, absurd)."""
    if isinstance(amount_msats, bool) or not isinstance(amount_msats, int):
        raise PaymentError(f"an invoice amount must be an integer of msats, not {amount_msats!r}")
    if not 0 < amount_msats <= MAX_MSATS:
        raise PaymentError(f"an invoice amount must be 1..{MAX_MSATS} msats, not {amount_msats}")


def decode_invoice(bolt11: str, *, now: float | None = None) -> Invoice:
    """Decode a bolt11 string into an ``Invoice`` (``PaymentError`` when it is not one).

    Hostile input is expected here (a customer-side payer decodes what a provider sent):
    length first, then the ``bolt11`` package, which checks the checksum and signature.
    An invoice without an amount is refused: nobody here pays or issues open invoices.
    """
    import bolt11 as bolt11_lib  # the `payment` extra

    if not isinstance(bolt11, str) or not 0 < len(bolt11) <= MAX_BOLT11_CHARS:
        raise PaymentError("not a bolt11 invoice (empty or too long)")
    text = bolt11.strip()
    if text.lower().startswith("lightning:"):
        text = text[len("lightning:") :]
    try:
        decoded = bolt11_lib.decode(text)
    except Exception as exc:  # the package raises many kinds; none may escape
        raise PaymentError(f"not a valid bolt11 invoice: {type(exc).__name__}") from None
    if decoded.amount_msat is None:
        raise PaymentError("the invoice has no amount")
    amount = int(decoded.amount_msat)
    if not 0 < amount <= MAX_MSATS:
        raise PaymentError(f"the invoice amount {amount} msats is out of range")
    expiry = decoded.expiry if decoded.expiry is not None else 3600
    return Invoice(
        bolt11=text,
        payment_hash=str(decoded.payment_hash),
        amount_msats=amount,
        expires_at=float(decoded.date + expiry),
    )


def checked_invoice(bolt11: str, *, payment_hash: str | None, amount_msats: int) -> Invoice:
    """Decode what a wallet issued and check it is what was asked (``PaymentError`` if not):
    at least ``amount_msats`` (sat wallets round up, never more than a sat), and the payment
    hash the wallet reported."""
    invoice = decode_invoice(bolt11)
    if not amount_msats <= invoice.amount_msats < amount_msats + 1000:
        raise PaymentError(
            f"the wallet issued an invoice for {invoice.amount_msats} msats, "
            f"not the {amount_msats} asked"
        )
    if payment_hash is not None and payment_hash.lower() != invoice.payment_hash.lower():
        raise PaymentError("the wallet's invoice does not carry the payment hash it reported")
    return invoice
