"""A DVM whose key lives in another library: a nostr-sdk ``Keys`` behind the ``Signer`` seam.

The provider's secret is held by nostr-sdk (rust-nostr's Python bindings). A small class gives
it the six members of ``nostr_imagegen.Signer``; from then on the library uses it wherever it
signs or decrypts: ``parse_image_job`` decrypts an encrypted request with it, ``build_result``
encrypts the answer with it, ``sign_event`` signs the kind 6100 result with it (and checks
that what came back is the template, signed). The same shape bridges a remote NIP-46 signer
or a hardware key (see docs/events-and-keys.md). Nothing is published: no network is used.

    .venv/bin/python examples/sign_with_nostr_sdk.py
"""

from __future__ import annotations

import json
import sys

from nostr_imagegen import (
    Event,
    ImageLink,
    Keys,
    Signer,
    UnsignedEvent,
    build_result,
    parse_event,
    parse_image_job,
    sign_event,
)

try:
    import nostr_sdk
except ImportError:  # pragma: no cover - nostr-sdk comes with the development extra
    sys.exit("this example needs nostr-sdk: pip install nostr-sdk")


class NostrSdkSigner:
    """``nostr_imagegen.Signer`` backed by a ``nostr_sdk.Keys``."""

    def __init__(self, keys: nostr_sdk.Keys) -> None:
        self._keys = keys
        self.public_key: str = keys.public_key().to_hex()

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
        return parse_event(self._keys.sign_event(unsigned).as_json())

    def nip44_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
        return self._keys.nip44_encrypt(nostr_sdk.PublicKey.parse(peer_pubkey), plaintext)

    def nip44_decrypt(self, peer_pubkey: str, payload: str) -> str:
        return self._keys.nip44_decrypt(nostr_sdk.PublicKey.parse(peer_pubkey), payload)

    def nip04_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
        return self._keys.nip04_encrypt(nostr_sdk.PublicKey.parse(peer_pubkey), plaintext)

    def nip04_decrypt(self, peer_pubkey: str, payload: str) -> str:
        return self._keys.nip04_decrypt(nostr_sdk.PublicKey.parse(peer_pubkey), payload)


def main() -> int:
    provider = NostrSdkSigner(nostr_sdk.Keys.generate())
    assert isinstance(provider, Signer)  # the six members are there
    customer = Keys.generate()

    # The customer encrypts the params to the provider (NIP-90 encrypted params, NIP-44).
    secret_tags = [
        ["i", "A purple ostrich watching the sunset", "text"],
        ["param", "ratio", "4:3"],
    ]
    customer_sdk = nostr_sdk.Keys.parse(customer.secret_hex())
    content = customer_sdk.nip44_encrypt(
        nostr_sdk.PublicKey.parse(provider.public_key), json.dumps(secret_tags)
    )
    request_template = UnsignedEvent(
        kind=5100, tags=(("p", provider.public_key), ("encrypted",)), content=content
    )
    request = parse_event(sign_event(request_template, customer).to_json())

    # The provider reads it: the nostr-sdk signer decrypts.
    job = parse_image_job(request, provider=provider)
    print(f"job {job.id[:16]}...: prompt={job.prompt!r} ratio={job.ratio} ({job.encryption})")

    # The result: the link is encrypted back to the customer, then signed by nostr-sdk.
    image = ImageLink(url="https://blossom.example/ab12.png", mime="image/png")
    result = sign_event(build_result(job, [image], keys=provider), provider)
    print(f"result kind {result.kind} by {result.pubkey[:16]}..., id {result.id[:16]}...")

    # Both libraries accept it; the customer decrypts the link with its own key.
    parse_event(result.to_json())
    assert nostr_sdk.Event.from_json(result.to_json()).verify()
    link = customer_sdk.nip44_decrypt(nostr_sdk.PublicKey.parse(result.pubkey), result.content)
    print(f"verified by nostr_imagegen and nostr-sdk; the customer reads: {link}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
