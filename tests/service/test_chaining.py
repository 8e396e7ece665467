"""ChainResolver on its own: what resolves a `job` or `event` input and what does not (forged,
encrypted or link-less results), the bounded wait, and the cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _runner_fakes import FakeEngine, FakeHost, FakePool, deletion

from nostr_imagegen.errors import JobRejected
from nostr_imagegen.imagejob.model import InputType, JobInput
from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.chaining import ChainResolver, InputPending
from nostr_imagegen.service.ledger import JobState, Ledger
from nostr_imagegen.service.runner import JobRunner, RunnerOptions

PROVIDER = Keys.generate()
EARLIER = "cd" * 32


def _result(content: str, *, encrypted: bool = False, request_id: str = EARLIER) -> Event:
    tags: list[tuple[str, ...]] = [("e", request_id), ("p", "ab" * 32)]
    if encrypted:
        tags.append(("encrypted",))
    return sign_event(UnsignedEvent(kind=6100, tags=tuple(tags), content=content), PROVIDER)


def _pending(resolver: ChainResolver, job_input: JobInput) -> InputPending:
    with pytest.raises(InputPending) as caught:
        resolver(job_input)
    return caught.value


async def test_a_job_input_resolves_to_the_first_valid_results_image() -> None:
    pool = FakePool()
    resolver = ChainResolver(pool, wait_s=5)
    job_input = JobInput(data=EARLIER, type=InputType.JOB, relay="wss://relay.example")
    pending = _pending(resolver, job_input)
    assert pending.waiting_message() == f"waiting for the result of job {EARLIER}"
    waiting = asyncio.create_task(pending.wait())
    await asyncio.sleep(0.01)
    [filters] = pool.subscriptions.values()
    assert {f.to_dict().get("#e", (None,))[0] for f in filters} >= {EARLIER}

    good = _result("https://img.example/a.png")
    forged = good.model_copy(update={"content": "https://evil.example/b.png"})  # sig no longer fits
    assert not resolver.offer(forged)
    assert not resolver.offer(_result("secret", encrypted=True))
    assert not resolver.offer(_result("no link here"))
    assert not resolver.offer(_result("https://img.example/x.png", request_id="ef" * 32))
    assert resolver.offer(good)
    assert await waiting is None
    assert resolver(job_input) == JobInput(data="https://img.example/a.png", type=InputType.URL)
    assert resolver.waiting == 0


async def test_an_event_input_resolves_to_its_text_and_a_missing_one_times_out() -> None:
    pool = FakePool()
    resolver = ChainResolver(pool, wait_s=0.2)
    customer = Keys.generate()
    note = sign_event(UnsignedEvent(kind=1, content="a glass ostrich"), customer)
    found = JobInput(data=note.id, type=InputType.EVENT)
    waiting = asyncio.create_task(_pending(resolver, found).wait())
    await asyncio.sleep(0.01)
    assert resolver.offer(note)
    assert await waiting is None
    assert resolver(found) == JobInput(data="a glass ostrich", type=InputType.TEXT)

    missing = JobInput(data="ee" * 32, type=InputType.EVENT)
    reason = await _pending(resolver, missing).wait()
    assert reason == f"event {'ee' * 32} did not appear within 0.2 s"
    assert resolver.waiting == 0


def test_a_job_input_that_is_not_an_event_id_is_rejected() -> None:
    resolver = ChainResolver(FakePool())
    with pytest.raises(JobRejected, match="64-hex event id"):
        resolver(JobInput(data="not-an-id", type=InputType.JOB))
    text = JobInput(data="plain", type=InputType.TEXT)
    assert resolver(text) is text


async def test_waits_are_bounded_in_number() -> None:
    resolver = ChainResolver(FakePool(), wait_s=5, max_waiting=1)
    first = asyncio.create_task(
        _pending(resolver, JobInput(data="a1" * 32, type=InputType.JOB)).wait()
    )
    await asyncio.sleep(0.01)
    second = await _pending(resolver, JobInput(data="b2" * 32, type=InputType.JOB)).wait()
    assert second == "too many chained jobs are waiting for their inputs; try again later"
    first.cancel()


async def test_a_chained_job_waits_says_so_and_its_customer_can_cancel_it(
    tmp_path: Path,
) -> None:
    pool = FakePool()
    customer = Keys.generate()
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        runner = JobRunner(
            keys=PROVIDER,
            pool=pool,
            engine=FakeEngine(),
            hosts=[FakeHost()],
            ledger=ledger,
            options=RunnerOptions(progress_interval_s=0.0, shutdown_timeout_s=2.0),
            input_resolver=ChainResolver(pool, wait_s=60),
        )
        await runner.start()
        try:
            tags = (("i", EARLIER, "job", "wss://relay.example"), ("i", "in blue", "text"))
            request = sign_event(UnsignedEvent(kind=5100, tags=tags), customer)
            pool.deliver(request)
            await pool.wait_for(lambda: bool(pool.statuses(request.id)))
            assert pool.statuses(request.id) == [
                ("processing", f"waiting for the result of job {EARLIER}")
            ]
            stranger = Keys.generate()
            pool.deliver(deletion(stranger, request.id))  # not theirs to cancel
            marker = sign_event(UnsignedEvent(kind=5100, tags=(("i", "x", "text"),)), stranger)
            pool.deliver(marker)  # events are handled in order: once it is, so is the deletion
            await pool.wait_for(lambda: ledger.state(marker.id) is JobState.PUBLISHED)
            assert ledger.state(request.id) is JobState.RECEIVED
            pool.deliver(deletion(customer, request.id))
            await pool.wait_for(lambda: ledger.state(request.id) is JobState.CANCELLED)
            assert runner.input_resolver.waiting == 0  # type: ignore[union-attr]
            assert pool.results(request.id) == []
        finally:
            await runner.stop(timeout_s=1.0)
