"""NIP-57 zap receipts (Appendix F): valid ones accepted, each forgery refused with its reason.

Every receipt here carries a real bolt11 invoice, encoded and signed with the ``bolt11``
package, so the decoding and the description-hash check run on real data.
"""

from __future__ import annotations

import hashlib

import pytest
from bolt11 import Bolt11, MilliSatoshi, encode
from bolt11.models.tags import TagChar, Tags

from nostr_imagegen.errors import EventError, NostrImagegenError, ZapReceiptInvalid
from nostr_imagegen.imagejob.zaps import (
    MAX_BOLT11_CHARS,
    ZapPayment,
    build_zap_receipt,
    build_zap_request,
    decode_bolt11,
    validate_zap_receipt,
)
from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.kinds import ZAP_RECEIPT_KIND, ZAP_REQUEST_KIND
from nostr_imagegen.testing.zaps import NODE_KEY, make_invoice, zap_receipt, zap_request

PRICE = 21_000
JOB = "ab" * 32
OTHER_JOB = "cd" * 32


@pytest.fixture
def server() -> Keys:
    """The LNURL server's nostrPubkey key."""
    return Keys.generate()


@pytest.fixture
def customer() -> Keys:
    return Keys.generate()


@pytest.fixture
def dvm() -> Keys:
    return Keys.generate()


def _request(customer: Keys, dvm: Keys, **kw: object) -> Event:
    args: dict[str, object] = {"recipient": dvm.public_key, "event_id": JOB, "amount_msats": PRICE}
    args.update(kw)
    return zap_request(customer, **args)  # type: ignore[arg-type]


def _validate(receipt: Event, server: Keys, customer: Keys, **kw: object) -> ZapPayment:
    args: dict[str, object] = {
        "lnurl_pubkey": server.public_key,
        "expected_msats": PRICE,
        "payer_pubkey": customer.public_key,
        "event_id": JOB,
    }
    args.update(kw)
    return validate_zap_receipt(receipt, **args)  # type: ignore[arg-type]


def _refused(receipt: Event, server: Keys, customer: Keys, match: str, **kw: object) -> None:
    with pytest.raises(ZapReceiptInvalid, match=match) as caught:
        _validate(receipt, server, customer, **kw)
    assert caught.value.reason == str(caught.value)
    assert isinstance(caught.value, NostrImagegenError)


def test_kinds() -> None:
    assert (ZAP_REQUEST_KIND, ZAP_RECEIPT_KIND) == (9734, 9735)


def test_valid_receipt_accepted(server: Keys, customer: Keys, dvm: Keys) -> None:
    request = _request(customer, dvm)
    receipt = zap_receipt(server, request)
    payment = _validate(receipt, server, customer, recipient_pubkey=dvm.public_key)
    assert payment == ZapPayment(
        receipt_id=receipt.id,
        amount_msats=PRICE,
        payer_pubkey=customer.public_key,
        event_id=JOB,
        bolt11=receipt.tag_value("bolt11"),  # type: ignore[arg-type]
    )


def test_overpaying_zap_accepted_for_its_full_amount(
    server: Keys, customer: Keys, dvm: Keys
) -> None:
    receipt = zap_receipt(server, _request(customer, dvm, amount_msats=50_000))
    assert _validate(receipt, server, customer).amount_msats == 50_000


def test_zap_request_without_amount_tag_checked_by_invoice(
    server: Keys, customer: Keys, dvm: Keys
) -> None:
    # NIP-57 makes the request's amount optional: then the invoice amount alone counts.
    request = _request(customer, dvm)
    bare = UnsignedEvent(
        kind=ZAP_REQUEST_KIND,
        tags=tuple(t for t in request.tags if t[0] != "amount"),
        created_at=request.created_at,
    )
    unsigned = sign_event(bare, customer)
    assert _validate(zap_receipt(server, unsigned, invoice_msats=PRICE), server, customer)
    short = zap_receipt(server, unsigned, invoice_msats=PRICE - 1)
    _refused(short, server, customer, "the job costs 21000")


def test_forged_signer_refused(server: Keys, customer: Keys, dvm: Keys) -> None:
    forger = Keys.generate()
    receipt = zap_receipt(forger, _request(customer, dvm))
    _refused(receipt, server, customer, "not by the LNURL server's nostrPubkey")


def test_tampered_receipt_signature_refused(server: Keys, customer: Keys, dvm: Keys) -> None:
    receipt = zap_receipt(server, _request(customer, dvm))
    tampered = receipt.model_copy(update={"content": "changed"})
    _refused(tampered, server, customer, "not validly signed")


def test_wrong_amount_refused(server: Keys, customer: Keys, dvm: Keys) -> None:
    # The invoice is for less than the zap request's amount: the server (or a forger) cheated.
    receipt = zap_receipt(server, _request(customer, dvm), invoice_msats=1_000)
    _refused(receipt, server, customer, "invoice is for 1000 msats but the zap request asked")


def test_underpaid_zap_refused(server: Keys, customer: Keys, dvm: Keys) -> None:
    receipt = zap_receipt(server, _request(customer, dvm, amount_msats=20_999))
    _refused(receipt, server, customer, "paid 20999 msats; the job costs 21000")


def test_wrong_description_hash_refused(server: Keys, customer: Keys, dvm: Keys) -> None:
    request = _request(customer, dvm)
    receipt = zap_receipt(server, request, hashed=request.to_json() + " ")
    _refused(receipt, server, customer, "not the bolt11 invoice's description hash")


def test_receipt_for_another_event_refused(server: Keys, customer: Keys, dvm: Keys) -> None:
    receipt = zap_receipt(server, _request(customer, dvm, event_id=OTHER_JOB))
    _refused(receipt, server, customer, f"zap receipt is for event {OTHER_JOB}")


def test_zap_request_for_another_event_in_a_relabelled_receipt_refused(
    server: Keys, customer: Keys, dvm: Keys
) -> None:
    # The receipt's own `e` names our job but the signed zap request paid for another one.
    request = _request(customer, dvm, event_id=OTHER_JOB)
    template = build_zap_receipt(request, bolt11=make_invoice(PRICE, request.to_json()))
    relabelled = UnsignedEvent(
        kind=template.kind,
        tags=tuple(("e", JOB) if t[0] == "e" else t for t in template.tags),
    )
    _refused(sign_event(relabelled, server), server, customer, "zap request is for event")


def test_zap_by_someone_else_refused(server: Keys, customer: Keys, dvm: Keys) -> None:
    receipt = zap_receipt(server, _request(Keys.generate(), dvm))
    _refused(receipt, server, customer, "not by the customer")


def test_zap_to_another_recipient_refused_when_recipient_given(
    server: Keys, customer: Keys, dvm: Keys
) -> None:
    receipt = zap_receipt(server, _request(customer, dvm, recipient=Keys.generate().public_key))
    _refused(receipt, server, customer, "zap request pays", recipient_pubkey=dvm.public_key)


def test_description_not_a_signed_zap_request_refused(
    server: Keys, customer: Keys, dvm: Keys
) -> None:
    request = _request(customer, dvm)
    forged = request.to_json().replace('"content":""', '"content":"x"')
    _refused(zap_receipt(server, request, description=forged), server, customer, "not a valid zap")
    note = sign_event(UnsignedEvent(kind=1, tags=(("e", JOB),)), customer)
    _refused(zap_receipt(server, request, description=note.to_json()), server, customer, "kind 1")
    _refused(zap_receipt(server, request, description="{]"), server, customer, "not a valid zap")


def test_not_a_receipt_refused(server: Keys, customer: Keys) -> None:
    note = sign_event(UnsignedEvent(kind=1), server)
    _refused(note, server, customer, "kind 1 is not a zap receipt")


def _receipt_with(server: Keys, request: Event, tags: tuple[tuple[str, ...], ...]) -> Event:
    return sign_event(UnsignedEvent(kind=ZAP_RECEIPT_KIND, tags=tags), server)


def test_missing_or_repeated_tags_refused(server: Keys, customer: Keys, dvm: Keys) -> None:
    request = _request(customer, dvm)
    good = zap_receipt(server, request)
    for name in ("bolt11", "description", "e"):
        tags = tuple(t for t in good.tags if t[0] != name)
        _refused(_receipt_with(server, request, tags), server, customer, f"no '{name}' tag")
    doubled = (*good.tags, ("e", OTHER_JOB))
    _refused(_receipt_with(server, request, doubled), server, customer, "2 'e' tags")
    empty = tuple(("bolt11",) if t[0] == "bolt11" else t for t in good.tags)
    _refused(_receipt_with(server, request, empty), server, customer, "'bolt11' tag has no value")


def test_wrong_payer_tag_refused(server: Keys, customer: Keys, dvm: Keys) -> None:
    good = zap_receipt(server, _request(customer, dvm))
    tags = tuple(("P", dvm.public_key) if t[0] == "P" else t for t in good.tags)
    _refused(_receipt_with(server, good, tags), server, customer, "P tag")


@pytest.mark.parametrize(
    "bolt11",
    [
        "",
        "lnbc1",
        "not an invoice",
        "lnbc" + "q" * 400,
        "lnbc" + "\u00e9" * 50,
        "x" * (MAX_BOLT11_CHARS + 1),
    ],
)
def test_malformed_bolt11_refused(server: Keys, customer: Keys, dvm: Keys, bolt11: str) -> None:
    good = zap_receipt(server, _request(customer, dvm))
    tags = tuple(("bolt11", bolt11) if t[0] == "bolt11" else t for t in good.tags)
    _refused(_receipt_with(server, good, tags), server, customer, "bolt11 invoice")


def test_tampered_bolt11_refused(server: Keys, customer: Keys, dvm: Keys) -> None:
    # One character changed: the bech32 checksum (or the node signature) no longer holds.
    good = zap_receipt(server, _request(customer, dvm))
    invoice = good.tag_value("bolt11")
    assert invoice is not None
    flipped = invoice[:-8] + ("q" if invoice[-8] != "q" else "p") + invoice[-7:]
    tags = tuple(("bolt11", flipped) if t[0] == "bolt11" else t for t in good.tags)
    _refused(_receipt_with(server, good, tags), server, customer, "does not decode")


def test_amountless_or_plain_description_invoice_refused(
    server: Keys, customer: Keys, dvm: Keys
) -> None:
    request = _request(customer, dvm)
    text = request.to_json()
    amountless = sign_event(build_zap_receipt(request, bolt11=make_invoice(None, text)), server)
    _refused(amountless, server, customer, "has no amount")
    tags = Tags()
    tags.add(TagChar.payment_hash, "11" * 32)
    tags.add(TagChar.payment_secret, "22" * 32)
    tags.add(TagChar.description, "a coffee")
    plain = encode(
        Bolt11(currency="bc", date=1_700_000_000, tags=tags, amount_msat=MilliSatoshi(PRICE)),
        NODE_KEY,
    )
    receipt = sign_event(build_zap_receipt(request, bolt11=plain), server)
    _refused(receipt, server, customer, "has no description hash")


@pytest.mark.parametrize("amount", ["21000.0", "-21000", "0x5208", "２１０００", "9" * 40])
def test_malformed_amount_tag_refused(server: Keys, customer: Keys, dvm: Keys, amount: str) -> None:
    request = _request(customer, dvm)
    odd = sign_event(
        UnsignedEvent(
            kind=ZAP_REQUEST_KIND,
            tags=tuple(("amount", amount) if t[0] == "amount" else t for t in request.tags),
        ),
        customer,
    )
    _refused(zap_receipt(server, odd, invoice_msats=PRICE), server, customer, "amount")


def test_decode_bolt11_reads_the_invoice() -> None:
    description = "a zap request"
    decoded = decode_bolt11(make_invoice(PRICE, description))
    assert decoded.amount_msats == PRICE
    assert decoded.description_hash == hashlib.sha256(description.encode()).hexdigest()
    assert len(decoded.payment_hash) == 64


def test_build_zap_request_wire_form(customer: Keys, dvm: Keys) -> None:
    template = build_zap_request(
        recipient_pubkey=dvm.public_key,
        event_id=JOB,
        amount_msats=PRICE,
        relays=["wss://a.example", "wss://b.example"],
        lnurl="lnurl1dp68gurn8ghj7",
        event_kind=7000,
        content="for the ostrich",
    )
    assert template.kind == 9734
    assert template.content == "for the ostrich"
    assert template.tags == (
        ("relays", "wss://a.example", "wss://b.example"),
        ("amount", "21000"),
        ("lnurl", "lnurl1dp68gurn8ghj7"),
        ("p", dvm.public_key),
        ("e", JOB),
        ("k", "7000"),
    )


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"recipient_pubkey": "AB" * 32}, "recipient pubkey"),
        ({"event_id": "nope"}, "event id"),
        ({"amount_msats": 0}, "amount_msats must be 1"),
        ({"amount_msats": True}, "must be an int"),
        ({"relays": []}, "at least one relay"),
        ({"relays": "wss://a.example"}, "at least one relay"),
        ({"relays": ["https://a.example"]}, "must start with"),
    ],
)
def test_build_zap_request_refuses_bad_input(dvm: Keys, kw: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "recipient_pubkey": dvm.public_key,
        "event_id": JOB,
        "amount_msats": PRICE,
        "relays": ["wss://a.example"],
    }
    args.update(kw)
    with pytest.raises(EventError, match=match):
        build_zap_request(**args)  # type: ignore[arg-type]


def test_build_zap_receipt_copies_the_request(server: Keys, customer: Keys, dvm: Keys) -> None:
    request = _request(customer, dvm)
    template = build_zap_receipt(request, bolt11="lnbc1x", preimage="00" * 32)
    assert template.kind == 9735
    assert template.tags == (
        ("p", dvm.public_key),
        ("e", JOB),
        ("P", customer.public_key),
        ("bolt11", "lnbc1x"),
        ("description", request.to_json()),
        ("preimage", "00" * 32),
    )
    with pytest.raises(EventError, match="not a zap request"):
        build_zap_receipt(sign_event(UnsignedEvent(kind=1), customer), bolt11="lnbc1x")
