"""Job chaining through a real relay (nostr-relay): a job whose input is an earlier job's
result (img2img from its image, fetched with the safe fetcher), a job whose prompt is a note,
and a job whose input never appears (bounded wait, then `error`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from dvm_harness import (  # noqa: F401 - fixtures
    Customer,
    Dvm,
    tiny_engine_fixture,
    tiny_model_folder_fixture,
)

from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.client import build_request
from nostr_imagegen.service.fetch import FetchPolicy
from nostr_imagegen.service.ledger import JobState
from nostr_imagegen.service.relay import RelayPool

pytestmark = pytest.mark.integration

# The image host of the test DVM is on 127.0.0.1: the safe fetcher must be told it may go there.
LOOPBACK_FETCH = FetchPolicy(allow_private_addresses=True)


class RecordingEngine:
    """The tiny engine, remembering each job and whether it got an input image."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.jobs: list[tuple[ImageJob, tuple[int, int] | None]] = []

    def generate(self, job: ImageJob, **kwargs: Any) -> Any:
        image = kwargs.get("init_image")
        self.jobs.append((job, None if image is None else image.size))
        return self.engine.generate(job, **kwargs)

    def plan(self, job: ImageJob) -> object:
        return self.engine.plan(job)

    def offered(self) -> Any:
        return self.engine.offered()


def _chained(customer: Keys, ref: str, kind: str, relay: str, prompt: str | None) -> Any:
    tags: list[tuple[str, ...]] = [("i", ref, kind, relay)]
    if prompt is not None:
        tags.append(("i", prompt, "text"))
    tags.append(("param", "strength", "0.5"))
    return sign_event(UnsignedEvent(kind=5100, tags=tuple(tags)), customer)


async def test_a_job_takes_an_earlier_jobs_result_that_appears_later(
    relay_url: str, tmp_path: Path, tiny_engine: Any
) -> None:
    engine = RecordingEngine(tiny_engine)
    async with (
        Dvm([relay_url], tmp_path, engine, chain_wait_s=60, fetch_policy=LOOPBACK_FETCH) as dvm,
        Customer([relay_url]) as customer,
    ):
        first = build_request(customer.keys, prompt="a purple ostrich")
        second = _chained(customer.keys, first.id, "job", relay_url, "the same, in blue")
        # The chained job comes first: its input does not exist yet, so it waits.
        waiting = asyncio.create_task(customer.submit(second, provider=dvm.keys.public_key))
        await asyncio.sleep(1.0)
        assert dvm.state(second.id) is JobState.RECEIVED
        earlier = await customer.submit(first, provider=dvm.keys.public_key)
        assert earlier.error is None
        outcome = await waiting
        assert outcome.error is None
        assert outcome.result is not None
        _, notice = outcome.feedback[0]  # the first answer: it waits, and says for what
        assert notice.raw_status == "processing"
        assert notice.message == f"waiting for the result of job {first.id}"
        assert outcome.urls != earlier.urls
        [(first_job, no_image), (second_job, image_size)] = engine.jobs
        assert first_job.id == first.id
        assert no_image is None
        assert second_job.id == second.id
        assert second_job.image_url == earlier.urls[0]  # the earlier job's image, img2img
        assert image_size is not None
        assert second_job.prompt == "the same, in blue"


async def test_an_event_input_takes_the_notes_text_as_the_prompt(
    relay_url: str, tmp_path: Path, tiny_engine: Any
) -> None:
    engine = RecordingEngine(tiny_engine)
    async with (
        Dvm([relay_url], tmp_path, engine, chain_wait_s=30) as dvm,
        Customer([relay_url]) as customer,
    ):
        note = sign_event(UnsignedEvent(kind=1, content="an ostrich made of glass"), customer.keys)
        async with RelayPool([relay_url], keys=customer.keys) as pool:
            await pool.wait_connected(timeout_s=10)
            assert (await pool.publish(note)).ok
        request = _chained(customer.keys, note.id, "event", relay_url, None)
        outcome = await customer.submit(request, provider=dvm.keys.public_key)
        assert outcome.error is None
        [(job, image)] = engine.jobs
        assert job.prompt == "an ostrich made of glass"
        assert image is None


async def test_a_chained_input_that_never_appears_ends_the_job_with_an_error(
    relay_url: str, tmp_path: Path, tiny_engine: Any
) -> None:
    engine = RecordingEngine(tiny_engine)
    async with (
        Dvm([relay_url], tmp_path, engine, chain_wait_s=1.5) as dvm,
        Customer([relay_url]) as customer,
    ):
        missing = "ab" * 32
        request = _chained(customer.keys, missing, "job", relay_url, "never mind")
        outcome = await customer.submit(request, provider=dvm.keys.public_key, timeout_s=30)
        assert outcome.result is None
        assert outcome.error is not None
        assert f"a result of job {missing} did not appear within 1.5 s" in outcome.error
        await dvm.wait_state(request.id, JobState.REJECTED)
        assert engine.jobs == []
        assert dvm.runner is not None
        resolver = dvm.runner.input_resolver
        assert getattr(resolver, "waiting", None) == 0  # its subscription was ended
