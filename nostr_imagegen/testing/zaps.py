"""Real signed bolt11 invoices and zap receipts for tests: an "LNURL server" in a few functions.

    request = zap_request(customer, recipient=dvm.public_key, event_id=feedback.id,
                          amount_msats=21000)
    receipt = zap_receipt(lnurl_server_keys, request)   # kind 9735, a real signed bolt11

The invoice is encoded with the ``bolt11`` package (the service extra) and signed with a node
key, its description hash committing to the zap request, as an LNURL server does (NIP-57 step
6); nothing is paid. The keyword arguments of ``zap_receipt`` forge the mistakes a validator
must catch (another amount, another description). Not imported by ``nostr_imagegen.testing``.
"""

from __future__ import annotations

import hashlib
import os
import time

from bolt11 import Bolt11, MilliSatoshi, encode
from bolt11.models.tags import TagChar, Tags

from nostr_imagegen.imagejob.zaps import build_zap_receipt, build_zap_request
from nostr_imagegen.nostr.event import Event, sign_event
from nostr_imagegen.nostr.keys import Keys

#: The Lightning node key that signs test invoices (secp256k1, hex).
NODE_KEY = hashlib.sha256(b"test lightning node").hexdigest()


def make_invoice(amount_msats: int | None, description: str, *, node_key: str = NODE_KEY) -> str:
    """A signed bolt11 invoice for ``amount_msats`` (None: no amount) whose description hash
    is sha256(``description``)."""
    tags = Tags()
    tags.add(TagChar.payment_hash, os.urandom(32).hex())
    tags.add(TagChar.payment_secret, os.urandom(32).hex())
    tags.add(TagChar.description_hash, hashlib.sha256(description.encode()).hexdigest())
    tags.add(TagChar.expire_time, 3600)
    invoice = Bolt11(
        currency="bc",
        date=int(time.time()),
        tags=tags,
        amount_msat=MilliSatoshi(amount_msats) if amount_msats is not None else None,
    )
    return encode(invoice, node_key)


def zap_request(
    payer: Keys,
    *,
    recipient: str,
    event_id: str,
    amount_msats: int,
    relays: list[str] | None = None,
) -> Event:
    """A signed kind 9734 zap request."""
    template = build_zap_request(
        recipient_pubkey=recipient,
        event_id=event_id,
        amount_msats=amount_msats,
        relays=relays or ["wss://relay.example"],
    )
    return sign_event(template, payer)


def zap_receipt(
    server: Keys,
    request: Event,
    *,
    invoice_msats: int | None = None,
    description: str | None = None,
    hashed: str | None = None,
) -> Event:
    """A kind 9735 receipt signed by ``server`` for ``request``.

    ``invoice_msats``: the invoice amount (default: the request's ``amount``). ``description``:
    the description tag (default: the request's JSON). ``hashed``: what the invoice's
    description hash commits to (default: the description).
    """
    text = description if description is not None else request.to_json()
    amount = invoice_msats if invoice_msats is not None else int(request.tag_value("amount") or 0)
    invoice = make_invoice(amount, hashed if hashed is not None else text)
    return sign_event(build_zap_receipt(request, bolt11=invoice, description=text), server)
