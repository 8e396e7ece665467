"""A Signer that is not Keys, backed by nostr-sdk (rust-nostr): the library signs, decrypts and
encrypts through it wherever it would use Keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _request_support import CUSTOMER, PROMPT, prompt_request

from nostr_imagegen.imagejob.model import Ratio
from nostr_imagegen.imagejob.request import parse_image_job
from nostr_imagegen.imagejob.results import (
    ImageLink,
    JobStatus,
    build_feedback,
    build_result,
    parse_feedback,
    parse_result,
)
from nostr_imagegen.nostr.encryption import EncryptionScheme, encrypt
from nostr_imagegen.nostr.event import Event, UnsignedEvent, parse_event, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.signer import Signer

nostr_sdk = pytest.importorskip("nostr_sdk")

IMAGE = ImageLink(url="https://blossom.example/ab12.png", mime="image/png", width=64, height=64)


class SdkSigner:
    """The Signer of examples/sign_with_nostr_sdk.py: a nostr_sdk.Keys behind the seam."""

    def __init__(self, keys: object) -> None:
        self._keys = keys
        self.public_key: str = keys.public_key().to_hex()  # type: ignore[attr-defined]

    def sign_event(self, template: UnsignedEvent) -> Event:
        unsigned = nostr_sdk.UnsignedEvent.from_json(
            json.dumps(
                {
                    "pubkey": self.public_key,
                    "created_at": template.created_at,
                    "kind": template.kind,
                    "tags": [list(tag) for tag in template.tags],
                    "content": template.content,
                },
                ensure_ascii=False,
            )
        )
        return parse_event(self._keys.sign_event(unsigned).as_json())  # type: ignore[attr-defined]

    def _peer(self, pubkey: str) -> object:
        return nostr_sdk.PublicKey.parse(pubkey)

    def nip44_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
        return str(self._keys.nip44_encrypt(self._peer(peer_pubkey), plaintext))  # type: ignore[attr-defined]

    def nip44_decrypt(self, peer_pubkey: str, payload: str) -> str:
        return str(self._keys.nip44_decrypt(self._peer(peer_pubkey), payload))  # type: ignore[attr-defined]

    def nip04_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
        return str(self._keys.nip04_encrypt(self._peer(peer_pubkey), plaintext))  # type: ignore[attr-defined]

    def nip04_decrypt(self, peer_pubkey: str, payload: str) -> str:
        return str(self._keys.nip04_decrypt(self._peer(peer_pubkey), payload))  # type: ignore[attr-defined]


@pytest.fixture
def provider() -> SdkSigner:
    return SdkSigner(nostr_sdk.Keys.generate())


def test_it_is_a_signer_and_not_keys(provider: SdkSigner) -> None:
    assert isinstance(provider, Signer)
    assert not isinstance(provider, Keys)


def test_a_result_it_signs_is_verified_by_parse_event(provider: SdkSigner) -> None:
    job = parse_image_job(prompt_request(("param", "ratio", "4:3")), provider=provider)
    result = sign_event(build_result(job, [IMAGE], relay_hint="wss://relay.example"), provider)
    assert result.pubkey == provider.public_key
    assert result.kind == 6100
    assert parse_event(result.to_json()) == result
    assert nostr_sdk.Event.from_json(result.to_json()).verify()
    assert parse_result(result).urls == (IMAGE.url,)


def _request_to(provider_pubkey: str, scheme: EncryptionScheme, customer: Signer) -> Event:
    """A request whose params are encrypted by ``customer`` to ``provider_pubkey``."""
    secret = json.dumps([["i", PROMPT, "text"], ["param", "ratio", "16:9"]])
    template = UnsignedEvent(
        kind=5100,
        tags=(("p", provider_pubkey), ("encrypted",)),
        content=encrypt(secret, customer, provider_pubkey, scheme),
    )
    return parse_event(sign_event(template, customer).to_json())


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_it_decrypts_an_encrypted_request_through_parse_image_job(
    provider: SdkSigner, scheme: EncryptionScheme
) -> None:
    job = parse_image_job(_request_to(provider.public_key, scheme, CUSTOMER), provider=provider)
    assert (job.prompt, job.ratio, job.encryption) == (PROMPT, Ratio.LANDSCAPE_16_9, scheme)

    # The answers go back encrypted by the same signer; the customer reads them.
    result = sign_event(build_result(job, [IMAGE], keys=provider), provider)
    assert result.first_tag("encrypted") is not None
    assert IMAGE.url not in result.content
    assert parse_result(parse_event(result.to_json()), keys=CUSTOMER).urls == (IMAGE.url,)
    feedback = build_feedback(
        job, JobStatus.ERROR, message="lora xyz is not offered", keys=provider
    )
    parsed = parse_feedback(parse_event(sign_event(feedback, provider).to_json()), keys=CUSTOMER)
    assert (parsed.status, parsed.message) == (JobStatus.ERROR, "lora xyz is not offered")


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_the_customer_can_be_an_sdk_signer_too(scheme: EncryptionScheme) -> None:
    customer, dvm = SdkSigner(nostr_sdk.Keys.generate()), Keys.generate()
    job = parse_image_job(_request_to(dvm.public_key, scheme, customer), provider=dvm)
    assert (job.customer, job.prompt) == (customer.public_key, PROMPT)
    result = sign_event(build_result(job, [IMAGE], keys=dvm), dvm)
    assert parse_result(result, keys=customer).urls == (IMAGE.url,)


def test_the_example_runs_offline() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "sign_with_nostr_sdk.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "verified by nostr_imagegen and nostr-sdk" in done.stdout
