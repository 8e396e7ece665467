"""Builders for the request-parsing tests: signed requests, clear or encrypted."""

from __future__ import annotations

import json
from collections.abc import Sequence

from nostr_imagegen.nostr.encryption import EncryptionScheme, encrypt
from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys

PROMPT = "A purple ostrich watching the sunset"
IMAGE_URL = (
    "https://image.nostr.build/cbfedf544d1ab82d26332bf70c1ea55b8f275ae59a04c3dac175d9cae536725e.jpg"
)

#: Made once per test session: key generation is cheap, but hypothesis wants no fixtures.
CUSTOMER = Keys.generate()
PROVIDER = Keys.generate()


def request(
    *tags: Sequence[str], kind: int = 5100, content: str = "", keys: Keys = CUSTOMER
) -> Event:
    """A signed request carrying ``tags`` in clear."""
    template = UnsignedEvent(kind=kind, tags=tuple(tuple(t) for t in tags), content=content)
    return sign_event(template, keys)


def prompt_request(*tags: Sequence[str], kind: int = 5100) -> Event:
    """A signed request with the standard text prompt followed by ``tags``."""
    return request(("i", PROMPT, "text"), *tags, kind=kind)


def encrypted_request(
    secret_tags: Sequence[Sequence[str]] | str,
    *clear_tags: Sequence[str],
    to: Keys = PROVIDER,
    scheme: EncryptionScheme = EncryptionScheme.NIP44,
) -> Event:
    """A request whose ``secret_tags`` (or raw plaintext) are encrypted to ``to``.

    The clear tags are ``["p", to]``, ``["encrypted"]`` and then ``clear_tags``.
    """
    plaintext = secret_tags if isinstance(secret_tags, str) else json.dumps(secret_tags)
    content = encrypt(plaintext, CUSTOMER, to.public_key, scheme)
    return request(("p", to.public_key), ("encrypted",), *clear_tags, content=content)
