"""Job results (kind 6000..6999, 6100 for images) and every answer a DVM sends, in one import.

The result, in the order ``build_result`` writes the tags::

    {"kind": 6100,
     "content": "https://cdn.example/ab12.png\\nhttps://cdn.example/cd34.png",
     "tags": [["request", "<the request event, compact JSON>"],
              ["e", "<request id>", "wss://relay.example"],   # relay hint optional
              ["p", "<customer pubkey>"],
              ["i", "A purple ostrich watching the sunset", "text"],   # the request's i tags
              ["amount", "21000", "lnbc210n1..."],           # optional
              ["alt", "Image generation result"],            # NIP-31
              ["expiration", "1700086400"],                  # optional, NIP-40
              ["imeta", "url https://cdn.example/ab12.png", "m image/png", "x <sha256>",
               "dim 1024x768", "size 482113"],               # one per image, NIP-92
              ["imeta", "url https://cdn.example/cd34.png", ...]]}

Content is the image links, **one URL per line**, in the order of the ``imeta`` tags: clients
that only show text show working links, and NIP-92 clients match each ``imeta`` to its URL.

Encrypted requests (NIP-90 "Encrypted Output") get the same content encrypted to the customer
with the request's scheme, an ``["encrypted"]`` tag, and no ``i`` or ``imeta`` tags (either
would show the prompt or the image in the clear). ``request``, ``e``, ``p``, ``amount`` and
``alt`` stay in the clear: the quoted request is the public event whose params are already
ciphertext, and ``e``/``p`` are how the customer finds the answer::

    {"kind": 6100, "content": "<encrypted URL lines>",
     "tags": [["request", "..."], ["e", "<request id>"], ["p", "<customer>"],
              ["alt", "Image generation result"], ["encrypted"]]}

This module also re-exports the feedback, handler-information, cancellation and imeta names,
so ``from nostr_imagegen.imagejob.results import build_feedback`` works.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nostr_imagegen.errors import EncryptionError, EventError
from nostr_imagegen.imagejob import _answer_tags as wire
from nostr_imagegen.imagejob.cancellation import Cancellation, parse_cancellation
from nostr_imagegen.imagejob.feedback import (
    JobStatus,
    ParsedFeedback,
    build_feedback,
    parse_feedback,
)
from nostr_imagegen.imagejob.handler_info import HANDLER_INFO_KIND, build_handler_info
from nostr_imagegen.imagejob.imeta import ImageLink
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.nostr.encryption import decrypt, encrypt
from nostr_imagegen.nostr.event import Event, Tag, UnsignedEvent
from nostr_imagegen.nostr.kinds import RESULT_KIND_OFFSET, RESULT_KINDS
from nostr_imagegen.nostr.signer import Signer
from nostr_imagegen.nostr.urls import HTTP_SCHEMES

__all__ = [
    "DEFAULT_RESULT_ALT",
    "HANDLER_INFO_KIND",
    "MAX_RESULT_IMAGES",
    "Cancellation",
    "ImageLink",
    "JobStatus",
    "ParsedFeedback",
    "ParsedResult",
    "build_feedback",
    "build_handler_info",
    "build_result",
    "parse_cancellation",
    "parse_feedback",
    "parse_result",
    "result_kind_for",
]

logger = logging.getLogger(__name__)

DEFAULT_RESULT_ALT = "Image generation result"
#: At most this many images in one result (built or read).
MAX_RESULT_IMAGES = 32
_MAX_ALT_CHARS = 280


def result_kind_for(request_kind: int) -> int:
    """The result kind for a request kind: ``result_kind_for(5100) == 6100``.

    Raises ``EventError`` unless ``request_kind`` is in 5000..5999.
    """
    wire.check_request_kind(request_kind)
    return request_kind + RESULT_KIND_OFFSET


def build_result(
    job: ImageJob,
    images: Sequence[ImageLink],
    *,
    keys: Signer | None = None,
    amount_msats: int | None = None,
    bolt11: str | None = None,
    relay_hint: str | None = None,
    expiration: int | None = None,
    alt: str | None = None,
) -> UnsignedEvent:
    """A result template (kind = request kind + 1000) delivering ``images`` for ``job``.

    ``keys`` (the provider's ``Keys`` or other ``Signer``) is required when the job was
    encrypted: the content is then encrypted to the customer with the request's scheme
    (``EncryptionError`` without keys).
    An image without metadata gets no ``imeta`` tag (NIP-92 needs one field besides url).
    """
    if not isinstance(job, ImageJob):
        raise EventError(f"build_result answers an ImageJob, got {type(job).__name__}")
    kind = result_kind_for(job.kind)
    links = tuple(images)
    if not links:
        raise EventError("a result needs at least one image")
    if len(links) > MAX_RESULT_IMAGES:
        raise EventError(f"a result carries at most {MAX_RESULT_IMAGES} images")
    if not all(isinstance(link, ImageLink) for link in links):
        raise EventError("images must be ImageLink instances")
    urls = [link.url for link in links]
    if len(set(urls)) != len(urls):
        raise EventError("each image url may appear only once in a result (NIP-92)")
    content = "\n".join(urls)

    tags: list[Tag] = [
        ("request", job.request.to_json()),
        wire.e_tag(job.id, relay_hint),
        ("p", job.customer),
    ]
    if job.encryption is None:
        # The request's own i tags, verbatim: "the original input(s) specified in the request".
        tags.extend(job.request.tags_named("i"))
    amount = wire.amount_tag(amount_msats, bolt11)
    if amount is not None:
        tags.append(amount)
    tags.append(("alt", wire.clean_text(alt or DEFAULT_RESULT_ALT, _MAX_ALT_CHARS)))
    expires = wire.expiration_tag(expiration)
    if expires is not None:
        tags.append(expires)
    if job.encryption is None:
        tags.extend(link.to_imeta_tag() for link in links if link.has_metadata)
    else:
        if keys is None:
            raise EncryptionError("a result for an encrypted job needs the provider's keys")
        content = encrypt(content, keys, job.customer, job.encryption)
        tags.append(("encrypted",))
    return UnsignedEvent(kind=kind, tags=tuple(tags), content=content)


@dataclass(frozen=True)
class ParsedResult:
    """A result event as the customer reads it.

    ``urls`` are the http(s) links in the content (or, when the content has none, the
    ``imeta`` urls); ``images`` are the well-formed ``imeta`` tags.
    """

    request_id: str
    provider: str
    urls: tuple[str, ...]
    images: tuple[ImageLink, ...]
    amount_msats: int | None
    bolt11: str | None
    encrypted: bool


def _is_link(token: str) -> bool:
    try:
        wire.check_url(token, "url", HTTP_SCHEMES)
    except EventError:
        return False
    return True


def _extract_urls(text: str) -> tuple[str, ...]:
    """Links from a result's content: URL lines (ours), a JSON list of URLs, or prose."""
    tokens: list[Any] = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, list):
            tokens = data
    if not tokens:
        tokens = text.split()
    found: list[str] = []
    for token in tokens:
        if isinstance(token, str) and _is_link(token) and token not in found:
            found.append(token)
            if len(found) == MAX_RESULT_IMAGES:
                break
    return tuple(found)


def parse_result(event: Event, *, keys: Signer | None = None) -> ParsedResult:
    """Read a result event (kind 6000..6999, customer side).

    An encrypted result is decrypted with ``keys`` (the customer's ``Keys`` or other
    ``Signer``); without them it raises
    ``EncryptionError``, since nothing in it can be read. Malformed ``imeta`` tags are skipped.
    """
    if event.kind not in RESULT_KINDS:
        raise EventError(
            f"kind {event.kind} is not a job result kind "
            f"({RESULT_KINDS.start}..{RESULT_KINDS.stop - 1})"
        )
    request_id = wire.request_id_from(event.first_tag("e"), event)
    encrypted = event.first_tag("encrypted") is not None
    content = event.content
    if encrypted:
        if keys is None:
            raise EncryptionError(f"result {event.id} is encrypted; keys are needed to read it")
        content, _scheme = decrypt(event.content, keys, event.pubkey)
    images: list[ImageLink] = []
    for tag in event.tags_named("imeta"):
        if len(images) == MAX_RESULT_IMAGES:
            break
        try:
            images.append(ImageLink.from_imeta_tag(tag))
        except EventError as exc:
            logger.debug("skipping imeta tag in result %s: %s", event.id, exc)
    urls = _extract_urls(content) or tuple(dict.fromkeys(image.url for image in images))
    amount = event.first_tag("amount")
    amount_msats, bolt11 = wire.parse_amount(amount) if amount else (None, None)
    return ParsedResult(
        request_id=request_id,
        provider=event.pubkey,
        urls=urls,
        images=tuple(images),
        amount_msats=amount_msats,
        bolt11=bolt11,
        encrypted=encrypted,
    )
