"""Shared builders for the answer tests: signed kind 5100 requests and the ImageJobs they mean."""

from __future__ import annotations

import json

from nostr_imagegen.imagejob.model import ImageJob, InputType, JobInput, Ratio
from nostr_imagegen.nostr.encryption import EncryptionScheme, encrypt
from nostr_imagegen.nostr.event import Event, UnsignedEvent, parse_event, sign_event
from nostr_imagegen.nostr.keys import Keys

PROMPT = "A purple ostrich watching the sunset"
CLEAR_TAGS: tuple[tuple[str, ...], ...] = (
    ("i", PROMPT, "text"),
    ("param", "ratio", "4:3"),
    ("param", "negative_prompt", "broken hands, bad quality"),
)


def signed(template: UnsignedEvent, keys: Keys) -> Event:
    """Sign, then read back through the verifying parser (what a relay peer would see)."""
    return parse_event(sign_event(template, keys).to_json())


def clear_job(customer: Keys, *, kind: int = 5100) -> ImageJob:
    """A job from a clear request with the first example of the kind 5100 page."""
    request = signed(UnsignedEvent(kind=kind, tags=CLEAR_TAGS, content=""), customer)
    return ImageJob(
        id=request.id,
        customer=request.pubkey,
        kind=kind,
        created_at=request.created_at,
        prompt=PROMPT,
        ratio=Ratio.LANDSCAPE_4_3,
        negative_prompt="broken hands, bad quality",
        inputs=(JobInput(data=PROMPT, type=InputType.TEXT),),
        request=request,
    )


def encrypted_job(customer: Keys, provider: Keys, scheme: EncryptionScheme) -> ImageJob:
    """A job whose params arrived encrypted to ``provider`` with ``scheme``."""
    payload = json.dumps([list(tag) for tag in CLEAR_TAGS])
    content = encrypt(payload, customer, provider.public_key, scheme)
    tags = (("p", provider.public_key), ("encrypted",))
    request = signed(UnsignedEvent(kind=5100, tags=tags, content=content), customer)
    return ImageJob(
        id=request.id,
        customer=request.pubkey,
        kind=5100,
        created_at=request.created_at,
        prompt=PROMPT,
        providers=(provider.public_key,),
        encryption=scheme,
        inputs=(JobInput(data=PROMPT, type=InputType.TEXT),),
        request=request,
    )
