"""NIP-47 messages: the URI, a request the wallet can read, responses and notifications
the client can read, and what is refused."""

from __future__ import annotations

import json

import pytest

from nostr_imagegen.nostr.encryption import EncryptionScheme, decrypt, encrypt
from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.nip47 import (
    NwcError,
    build_nwc_request,
    parse_nwc_notification,
    parse_nwc_response,
    parse_nwc_uri,
)

WALLET = Keys.generate()
CLIENT = Keys.generate()
URI = (
    f"nostr+walletconnect://{WALLET.public_key}?relay=wss%3A%2F%2Frelay.example"
    f"&relay=ws%3A%2F%2F127.0.0.1%3A7000&secret={CLIENT.secret_hex()}&lud16=me%40example.org"
)


def test_uri_is_parsed_and_its_secret_never_printed() -> None:
    connection = parse_nwc_uri(URI)
    assert connection.wallet_pubkey == WALLET.public_key
    assert connection.relays == ("wss://relay.example", "ws://127.0.0.1:7000")
    assert connection.keys.public_key == CLIENT.public_key
    assert connection.lud16 == "me@example.org"
    assert CLIENT.secret_hex() not in repr(connection)


@pytest.mark.parametrize(
    "uri",
    [
        "https://example.org",
        f"nostr+walletconnect://abc?relay=wss%3A%2F%2Fr.example&secret={'1' * 64}",
        f"nostr+walletconnect://{'a' * 64}?secret={'1' * 64}",
        f"nostr+walletconnect://{'a' * 64}?relay=https%3A%2F%2Fr.example&secret={'1' * 64}",
        f"nostr+walletconnect://{'a' * 64}?relay=wss%3A%2F%2Fr.example",
        f"nostr+walletconnect://{'a' * 64}?relay=wss%3A%2F%2Fr.example&secret=zz",
    ],
)
def test_bad_uris_are_refused_without_quoting_the_secret(uri: str) -> None:
    with pytest.raises(NwcError) as refused:
        parse_nwc_uri(uri)
    assert "1" * 64 not in str(refused.value)


@pytest.mark.parametrize("scheme", [EncryptionScheme.NIP44, EncryptionScheme.NIP04])
def test_request_is_readable_by_the_wallet(scheme: EncryptionScheme) -> None:
    connection = parse_nwc_uri(URI)
    request = build_nwc_request(connection, "make_invoice", {"amount": 21000}, scheme=scheme)
    assert request.kind == 23194
    assert request.tag_value("p") == WALLET.public_key
    assert request.tag_value("encryption") == ("nip44_v2" if scheme.value == "nip44" else "nip04")
    plaintext, used = decrypt(request.content, WALLET, CLIENT.public_key)
    assert used is scheme
    assert json.loads(plaintext) == {"method": "make_invoice", "params": {"amount": 21000}}


def _from_wallet(kind: int, document: dict, tags: tuple = (), scheme=EncryptionScheme.NIP44):  # type: ignore[no-untyped-def, type-arg]
    content = encrypt(json.dumps(document), WALLET, CLIENT.public_key, scheme)
    return sign_event(
        UnsignedEvent(kind=kind, tags=(("p", CLIENT.public_key), *tags), content=content), WALLET
    )


def test_responses_success_and_error() -> None:
    connection = parse_nwc_uri(URI)
    ok = _from_wallet(
        23195,
        {"result_type": "make_invoice", "error": None, "result": {"invoice": "lnbc1"}},
        (("e", "ab" * 32),),
    )
    parsed = parse_nwc_response(ok, connection)
    assert parsed.ok
    assert parsed.result == {"invoice": "lnbc1"}
    assert parsed.request_id == "ab" * 32
    failed = _from_wallet(
        23195,
        {"result_type": "lookup_invoice", "error": {"code": "NOT_FOUND", "message": "no"}},
        (("e", "cd" * 32),),
    )
    parsed = parse_nwc_response(failed, connection)
    assert not parsed.ok
    assert parsed.error_code == "NOT_FOUND"


def test_notifications_in_both_schemes_and_forgeries_refused() -> None:
    connection = parse_nwc_uri(URI)
    body = {"notification_type": "payment_received", "notification": {"payment_hash": "00"}}
    assert parse_nwc_notification(_from_wallet(23197, body), connection).scheme.value == "nip44"
    old = _from_wallet(23196, body, scheme=EncryptionScheme.NIP04)
    assert parse_nwc_notification(old, connection).notification == {"payment_hash": "00"}
    stranger = Keys.generate()
    forged = sign_event(
        UnsignedEvent(
            kind=23197, tags=(("p", CLIENT.public_key),),
            content=encrypt(json.dumps(body), stranger, CLIENT.public_key),
        ),
        stranger,
    )  # fmt: skip
    with pytest.raises(NwcError, match="not from the connected wallet"):
        parse_nwc_notification(forged, connection)
    with pytest.raises(NwcError):
        parse_nwc_response(_from_wallet(23195, {"result_type": "x"}), connection)  # no e tag
