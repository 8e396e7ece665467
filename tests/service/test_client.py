"""The customer side: request building and JobClient routing answers to jobs (fake pool)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import pytest

from nostr_imagegen.errors import NostrImagegenError, RelayError
from nostr_imagegen.imagejob.request import parse_image_job
from nostr_imagegen.imagejob.results import (
    ImageLink,
    JobStatus,
    build_feedback,
    build_result,
)
from nostr_imagegen.nostr.encryption import EncryptionScheme, decrypt
from nostr_imagegen.nostr.event import Event, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.service.client import JobClient, build_request, submit_job

PROVIDER = Keys.generate()
OTHER_PROVIDER = Keys.generate()
CUSTOMER = Keys.generate()


@dataclass(frozen=True)
class _Published:
    ok: bool


class AnsweringPool:
    """Publishing a request makes ``answer(request)`` events arrive on ``events()``."""

    def __init__(self, answer: Answer | None = None, accept: bool = True) -> None:
        self.answer = answer
        self.accept = accept
        self.filters: dict[str, tuple[Filter, ...]] = {}
        self.unsubscribed: list[str] = []
        self._queue: asyncio.Queue[tuple[str, Event]] = asyncio.Queue()

    async def subscribe(
        self, subscription_id: str, filters: Sequence[Filter], *, lookback_s: int | None = None
    ) -> None:
        self.filters[subscription_id] = tuple(filters)

    async def unsubscribe(self, subscription_id: str) -> None:
        self.unsubscribed.append(subscription_id)

    async def publish(
        self, event: Event, *, relays: Sequence[str] | None = None, timeout_s: float = 10.0
    ) -> _Published:
        if self.accept and self.answer is not None:
            for answer in self.answer(event):
                self._queue.put_nowait(("ws://fake", answer))
        return _Published(ok=self.accept)

    async def events(self) -> AsyncIterator[tuple[str, Event]]:
        while True:
            yield await self._queue.get()


Answer = Callable[[Event], list[Event]]


def _answers(provider: Keys, *statuses: JobStatus, result: bool = True) -> Answer:
    def answer(request: Event) -> list[Event]:
        job = parse_image_job(request, provider=provider)
        events = []
        for status in statuses:
            message = "nope" if status is JobStatus.ERROR else None
            events.append(
                sign_event(build_feedback(job, status, message=message, keys=provider), provider)
            )
        if result:
            link = ImageLink(url=f"https://img.test/{request.id}.png", mime="image/png")
            events.append(sign_event(build_result(job, [link], keys=provider), provider))
        return events

    return answer


def test_build_request_in_the_clear() -> None:
    request = build_request(
        CUSTOMER,
        prompt="A purple ostrich",
        image_url="https://example.com/in.png",
        params=[("ratio", "4:3"), ("lora", "pixel", "0.8")],
        provider=PROVIDER.npub,
        relays=["wss://relay.example"],
        output="image/webp",
        bid_msats=5000,
    )
    assert request.kind == 5100
    assert request.pubkey == CUSTOMER.public_key
    assert request.tags == (
        ("i", "A purple ostrich", "text"),
        ("i", "https://example.com/in.png", "url"),
        ("param", "ratio", "4:3"),
        ("param", "lora", "pixel", "0.8"),
        ("p", PROVIDER.public_key),
        ("output", "image/webp"),
        ("bid", "5000"),
        ("relays", "wss://relay.example"),
    )
    job = parse_image_job(request, provider=PROVIDER)
    assert job.prompt == "A purple ostrich"
    assert job.relays == ("wss://relay.example",)


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_build_request_encrypted(scheme: EncryptionScheme) -> None:
    request = build_request(
        CUSTOMER,
        prompt="a secret",
        params=[("size", "64x64")],
        provider=PROVIDER.public_key,
        encryption=scheme,
    )
    assert "a secret" not in request.to_json()
    assert request.tags == (("p", PROVIDER.public_key), ("encrypted",))
    plaintext, found = decrypt(request.content, PROVIDER, CUSTOMER.public_key)
    assert found is scheme
    assert json.loads(plaintext) == [["i", "a secret", "text"], ["param", "size", "64x64"]]
    job = parse_image_job(request, provider=PROVIDER)
    assert job.prompt == "a secret"
    assert job.encryption is scheme
    with pytest.raises(NostrImagegenError, match="provider"):
        build_request(CUSTOMER, prompt="x", encryption=scheme)


async def test_submit_returns_the_result_with_the_feedback_before_it() -> None:
    pool = AnsweringPool(_answers(PROVIDER, JobStatus.PROCESSING))
    request = build_request(CUSTOMER, prompt="ostrich")
    seen: list[str] = []
    outcome = await submit_job(
        pool,
        request,
        keys=CUSTOMER,
        on_feedback=lambda event, parsed: seen.append(parsed.raw_status),
    )
    assert outcome.ok
    assert outcome.urls == (f"https://img.test/{request.id}.png",)
    assert seen == ["processing"]
    assert [parsed.status for _, parsed in outcome.feedback] == [JobStatus.PROCESSING]
    [answers] = pool.filters.values()
    assert answers[0].kinds == (6100, 7000)
    assert answers[0].tag_values("p") == (CUSTOMER.public_key,)
    assert pool.unsubscribed == list(pool.filters)


async def test_encrypted_answers_are_decrypted_for_the_customer() -> None:
    pool = AnsweringPool(_answers(PROVIDER, JobStatus.PROCESSING))
    request = build_request(
        CUSTOMER, prompt="secret", provider=PROVIDER.public_key, encryption=EncryptionScheme.NIP44
    )
    outcome = await submit_job(pool, request, keys=CUSTOMER, provider=PROVIDER.npub)
    assert outcome.ok
    assert outcome.parsed is not None
    assert outcome.parsed.encrypted
    assert outcome.urls == (f"https://img.test/{request.id}.png",)


async def test_error_feedback_ends_the_wait_unless_told_to_keep_waiting() -> None:
    pool = AnsweringPool(_answers(PROVIDER, JobStatus.ERROR, result=False))
    request = build_request(CUSTOMER, prompt="ostrich")
    outcome = await submit_job(pool, request, keys=CUSTOMER)
    assert not outcome.ok
    assert outcome.error == "nope"
    assert not outcome.timed_out
    kept = await submit_job(pool, request, keys=CUSTOMER, stop_on_error=False, timeout_s=0.3)
    assert kept.timed_out
    assert kept.error is not None
    assert "last error: nope" in kept.error


async def test_answers_from_other_providers_are_ignored_when_one_is_named() -> None:
    def answer(request: Event) -> list[Event]:
        wrong = _answers(OTHER_PROVIDER)(request)
        right = _answers(PROVIDER)(request)
        return [*wrong, *right]

    pool = AnsweringPool(answer)
    request = build_request(CUSTOMER, prompt="ostrich")
    outcome = await submit_job(pool, request, keys=CUSTOMER, provider=PROVIDER.public_key)
    assert outcome.result is not None
    assert outcome.result.pubkey == PROVIDER.public_key


async def test_many_jobs_share_one_client_and_get_their_own_answers() -> None:
    pool = AnsweringPool(_answers(PROVIDER, JobStatus.PROCESSING))
    requests = [build_request(CUSTOMER, prompt=f"ostrich {i}") for i in range(20)]
    async with JobClient(pool, CUSTOMER) as client:
        outcomes = await asyncio.gather(*(client.submit(request) for request in requests))
    assert len(pool.filters) == 1
    for request, outcome in zip(requests, outcomes, strict=True):
        assert outcome.result is not None
        assert outcome.result.tag_value("e") == request.id
        assert [e.tag_value("e") for e, _ in outcome.feedback] == [request.id]


async def test_unaccepted_request_raises_and_silence_times_out() -> None:
    request = build_request(CUSTOMER, prompt="ostrich")
    with pytest.raises(RelayError, match="no relay accepted"):
        await submit_job(AnsweringPool(accept=False), request, keys=CUSTOMER)
    outcome = await submit_job(AnsweringPool(), request, keys=CUSTOMER, timeout_s=0.2)
    assert outcome.timed_out
    assert outcome.result is None
    with pytest.raises(RelayError, match="async with"):
        await JobClient(AnsweringPool(), CUSTOMER).submit(request)
