"""The Signer seam: anything with the six members signs and en/decrypts where Keys does.

``Wrapped`` is a Signer that is not ``Keys`` (it delegates to one), so the checks that
``sign_event`` and the encryption helpers apply to foreign signers are exercised; the
nostr-sdk-backed Signer is tested end to end in tests/imagejob/test_sdk_signer.py.
"""

from __future__ import annotations

import json

import pytest

from nostr_imagegen.errors import EncryptionError, EventError, InvalidSignature
from nostr_imagegen.nostr.encryption import EncryptionScheme, decrypt, encrypt
from nostr_imagegen.nostr.event import Event, UnsignedEvent, parse_event, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.session import AuthChallenge, RelaySession
from nostr_imagegen.nostr.signer import Signer

TEMPLATE = UnsignedEvent(kind=6100, tags=(("p", "ab" * 32),), content="https://x.example/a.png")


class Wrapped:
    """A Signer that is not Keys: every call goes to the Keys inside."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self.public_key = keys.public_key
        self.calls: list[str] = []

    def sign_event(self, template: UnsignedEvent) -> Event:
        self.calls.append("sign_event")
        return self._keys.sign_event(template)

    def nip44_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
        self.calls.append("nip44_encrypt")
        return self._keys.nip44_encrypt(peer_pubkey, plaintext)

    def nip44_decrypt(self, peer_pubkey: str, payload: str) -> str:
        self.calls.append("nip44_decrypt")
        return self._keys.nip44_decrypt(peer_pubkey, payload)

    def nip04_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
        self.calls.append("nip04_encrypt")
        return self._keys.nip04_encrypt(peer_pubkey, plaintext)

    def nip04_decrypt(self, peer_pubkey: str, payload: str) -> str:
        self.calls.append("nip04_decrypt")
        return self._keys.nip04_decrypt(peer_pubkey, payload)


def test_keys_and_wrappers_are_signers_and_strings_are_not() -> None:
    keys = Keys.generate()
    assert isinstance(keys, Signer)
    assert isinstance(Wrapped(keys), Signer)
    assert not isinstance(keys.nsec(), Signer)


def test_a_foreign_signer_signs_what_parse_event_verifies() -> None:
    signer = Wrapped(Keys.generate())
    event = sign_event(TEMPLATE, signer, created_at=1_700_000_000)
    assert signer.calls == ["sign_event"]
    assert parse_event(event.to_json()) == event
    assert (event.pubkey, event.created_at) == (signer.public_key, 1_700_000_000)
    assert (event.kind, event.tags, event.content) == (
        TEMPLATE.kind,
        TEMPLATE.tags,
        "https://x.example/a.png",
    )


def test_the_signer_gets_the_time_filled_in() -> None:
    seen: list[int | None] = []

    class Recording(Wrapped):
        def sign_event(self, template: UnsignedEvent) -> Event:
            seen.append(template.created_at)
            return super().sign_event(template)

    sign_event(TEMPLATE, Recording(Keys.generate()))
    assert seen[0] is not None
    assert TEMPLATE.created_at is None  # the caller's template is not changed


class _Altering(Wrapped):
    """Signs something other than the template it is handed."""

    def __init__(self, keys: Keys, **change: object) -> None:
        super().__init__(keys)
        self._change = change

    def sign_event(self, template: UnsignedEvent) -> Event:
        return self._keys.sign_event(template.model_copy(update=self._change))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"content": "something else"}, "content"),
        ({"tags": ()}, "tags"),
        ({"kind": 1}, "kind"),
        ({"created_at": 1}, "created_at"),
    ],
)
def test_an_event_that_is_not_the_template_is_refused(
    change: dict[str, object], field: str
) -> None:
    with pytest.raises(EventError, match=field):
        sign_event(TEMPLATE, _Altering(Keys.generate(), **change), created_at=1_700_000_000)


def test_an_event_by_another_key_is_refused() -> None:
    liar = Wrapped(Keys.generate())
    liar.public_key = Keys.generate().public_key
    with pytest.raises(EventError, match="pubkey"):
        sign_event(TEMPLATE, liar)


def test_a_bad_signature_from_a_foreign_signer_is_refused() -> None:
    class Forger(Wrapped):
        def sign_event(self, template: UnsignedEvent) -> Event:
            good = self._keys.sign_event(template)
            return good.model_copy(update={"sig": "00" * 64})

    with pytest.raises(InvalidSignature):
        sign_event(TEMPLATE, Forger(Keys.generate()))


def test_a_signer_returning_something_else_is_refused() -> None:
    class Json(Wrapped):
        def sign_event(self, template: UnsignedEvent) -> Event:
            return self._keys.sign_event(template).to_json()  # type: ignore[return-value]

    with pytest.raises(EventError, match="not an Event"):
        sign_event(TEMPLATE, Json(Keys.generate()))


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_encryption_helpers_call_the_signer_of_the_scheme(scheme: EncryptionScheme) -> None:
    customer, provider = Wrapped(Keys.generate()), Wrapped(Keys.generate())
    payload = encrypt("params", customer, provider.public_key, scheme)
    assert decrypt(payload, provider, customer.public_key) == ("params", scheme)
    assert customer.calls == [f"{scheme.value}_encrypt"]
    assert provider.calls == [f"{scheme.value}_decrypt"]


def test_a_foreign_signers_errors_come_out_as_encryption_errors() -> None:
    class Broken(Wrapped):
        def nip44_decrypt(self, peer_pubkey: str, payload: str) -> str:
            raise RuntimeError("the bunker hung up")

        def nip44_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
            return 42  # type: ignore[return-value]

    customer, broken = Keys.generate(), Broken(Keys.generate())
    payload = encrypt("params", customer, broken.public_key)
    with pytest.raises(EncryptionError, match="bunker hung up") as info:
        decrypt(payload, broken, customer.public_key)
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(EncryptionError, match="returned int"):
        encrypt("params", broken, customer.public_key)


def test_an_oversized_payload_never_reaches_the_signer() -> None:
    signer = Wrapped(Keys.generate())
    payload = "A" * 100_000  # base64, so it reads as NIP-44, but too long to be one
    with pytest.raises(EncryptionError, match="longer than"):
        decrypt("Ag" + payload, signer, Keys.generate().public_key)
    assert signer.calls == []


def test_relay_session_answers_auth_with_a_foreign_signer() -> None:
    signer = Wrapped(Keys.generate())
    session = RelaySession("wss://relay.example.com", keys=signer)
    assert session.receive(json.dumps(["AUTH", "chal"])) == [AuthChallenge("chal")]
    [frame] = session.take_outgoing()
    auth = parse_event(json.loads(frame)[1])
    assert auth.pubkey == signer.public_key
    assert auth.tag_value("challenge") == "chal"
    assert signer.calls == ["sign_event"]
