"""JobRunner driven by fakes: the whole request -> feedback -> result logic, without sockets."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from _runner_fakes import (
    FakeEngine,
    FakeHost,
    FakePool,
    deletion,
    make_request,
    result_urls,
)

from nostr_imagegen.errors import EngineError
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.imagejob.results import parse_result
from nostr_imagegen.nostr.encryption import EncryptionScheme, encrypt
from nostr_imagegen.nostr.event import Event, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.ledger import JobState, Ledger, StoredImage
from nostr_imagegen.service.runner import Announcement, JobRunner, RunnerOptions

PROVIDER = Keys.generate()
CUSTOMER = Keys.generate()


RunnerFactory = Callable[..., Any]


def _in_state(ledger: Ledger, request_id: str, state: JobState) -> Callable[[], bool]:
    return lambda: ledger.state(request_id) is state


@pytest.fixture
async def start_runner(pool: FakePool, ledger: Ledger) -> AsyncIterator[Callable[..., Any]]:
    """``await start_runner(engine=..., **kwargs)`` -> a started runner, stopped at the end."""
    runners: list[JobRunner] = []

    async def start(**kwargs: Any) -> JobRunner:
        kwargs.setdefault("engine", FakeEngine())
        kwargs.setdefault("hosts", [FakeHost()])
        kwargs.setdefault(
            "options",
            RunnerOptions(
                progress_interval_s=0.0, shutdown_timeout_s=2.0, republish_interval_s=0.1
            ),
        )
        runner = JobRunner(
            keys=kwargs.pop("keys", PROVIDER),
            pool=kwargs.pop("pool", pool),
            ledger=kwargs.pop("ledger", ledger),
            **kwargs,
        )
        await runner.start()
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        await runner.stop(timeout_s=1.0)


async def test_request_gets_feedback_then_a_result_with_the_uploaded_image(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    host = FakeHost()
    seen_results: list[tuple[ImageJob, Event]] = []
    await start_runner(hosts=[host], on_result=lambda job, event: seen_results.append((job, event)))
    request = make_request(CUSTOMER, ("ratio", "4:3"), ("negative_prompt", "broken hands"))
    pool.deliver(request)
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)

    [result] = pool.results(request.id)
    assert result.pubkey == PROVIDER.public_key
    assert result.tag_value("p") == CUSTOMER.public_key
    assert json.loads(result.tag_value("request") or "") == request.to_dict()
    [url] = result_urls(result)
    sha = url.rsplit("/", 1)[1].removesuffix(".png")
    assert sha in host.stored
    assert host.stored[sha].startswith(b"\x89PNG")
    statuses = [status for status, _ in pool.statuses(request.id)]
    assert statuses[0] == "processing"
    assert statuses[-1] == "success"
    await pool.wait_for(lambda: bool(seen_results))
    assert seen_results[0][1] == result
    record = ledger.get(request.id)
    assert record is not None
    assert record.result_event_id == result.id
    assert [state for state, _, _ in ledger.history(request.id)] == [
        JobState.RECEIVED,
        JobState.ACCEPTED,
        JobState.QUEUED,
        JobState.PROCESSING,
        JobState.GENERATED,
        JobState.UPLOADED,
        JobState.PUBLISHED,
    ]


async def test_subscribes_to_accepted_kinds_and_deletions(
    pool: FakePool, start_runner: RunnerFactory
) -> None:
    runner = await start_runner(accepted_kinds=(5100, 5050))
    [filters] = pool.subscriptions.values()
    kinds = [f.kinds for f in filters]
    assert (5100, 5050) in kinds
    assert (5,) in kinds
    deletions = next(f for f in filters if f.kinds == (5,))
    assert deletions.since == runner.started_at  # no old deletions, no #p (they do not tag us)
    assert deletions.tag_values("p") is None


async def test_same_request_twice_and_after_restart_is_answered_once(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    engine = FakeEngine()
    await start_runner(engine=engine)
    request = make_request(CUSTOMER)
    pool.deliver(request, "ws://a.test")
    pool.deliver(request, "ws://b.test")
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)
    # A new runner on the same ledger (a restart) gets the request again from a relay.
    second_engine = FakeEngine()
    second = FakePool()
    await start_runner(engine=second_engine, pool=second)
    second.deliver(request, "ws://a.test")
    second.deliver(make_request(CUSTOMER, prompt="next"))
    await second.wait_for(lambda: len(second.results()) == 1)
    assert len(pool.results(request.id)) == 1
    assert second.results(request.id) == []
    assert engine.calls == [request.id]
    assert request.id not in second_engine.calls


async def test_rejected_request_gets_error_feedback_with_the_reason(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    await start_runner()
    request = make_request(CUSTOMER, ("ratio", "5:4"))
    pool.deliver(request)
    await pool.wait_for(lambda: bool(pool.statuses(request.id)))
    [(status, message)] = pool.statuses(request.id)
    assert status == "error"
    assert message is not None
    assert "5:4" in message
    assert ledger.state(request.id) is JobState.REJECTED
    assert pool.results() == []


async def test_jobs_for_other_providers_and_forged_events_are_ignored(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    engine = FakeEngine()
    await start_runner(engine=engine)
    other = make_request(CUSTOMER, extra_tags=[("p", Keys.generate().public_key)])
    genuine = make_request(CUSTOMER, prompt="the real one")
    forged = genuine.model_copy(update={"sig": "00" * 64})
    pool.deliver(other)
    pool.deliver(forged)  # a copy with a broken signature arrives first
    pool.deliver(genuine)
    await pool.wait_for(lambda: ledger.state(genuine.id) is JobState.PUBLISHED)
    assert ledger.get(other.id) is None  # not even recorded
    assert pool.events_of(7000, other.id) == []
    assert engine.calls == [genuine.id]


async def test_engine_failure_is_an_error_and_the_next_job_is_served(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    engine = FakeEngine(fail_with=EngineError("out of memory"))
    await start_runner(engine=engine)
    failing = make_request(CUSTOMER, prompt="first")
    pool.deliver(failing)
    await pool.wait_for(lambda: ledger.state(failing.id) is JobState.FAILED)
    await pool.wait_for(lambda: ("error", "out of memory") in pool.statuses(failing.id))
    engine.fail_with = RuntimeError("a bug in the engine")
    buggy = make_request(CUSTOMER, prompt="second")
    pool.deliver(buggy)
    await pool.wait_for(lambda: ledger.state(buggy.id) is JobState.FAILED)
    engine.fail_with = None
    fine = make_request(CUSTOMER, prompt="third")
    pool.deliver(fine)
    await pool.wait_for(lambda: ledger.state(fine.id) is JobState.PUBLISHED)
    assert len(pool.results()) == 1
    buggy_messages = [m for s, m in pool.statuses(buggy.id) if s == "error"]
    assert buggy_messages
    assert "internal error" in (buggy_messages[0] or "")


async def test_upload_failure_is_an_error(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    await start_runner(hosts=[FakeHost(fail=True), FakeHost(fail=True)])
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.FAILED)
    await pool.wait_for(lambda: any(s == "error" for s, _ in pool.statuses(request.id)))
    [message] = [m for s, m in pool.statuses(request.id) if s == "error"]
    assert message is not None
    assert "could not be stored" in message


async def test_customer_cancels_a_queued_job_and_a_running_one(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    await start_runner(engine=engine)
    running = make_request(CUSTOMER, prompt="running")
    queued = make_request(CUSTOMER, prompt="queued")
    pool.deliver(running)
    await asyncio.to_thread(engine.started.wait, 5)
    pool.deliver(queued)
    await pool.wait_for(lambda: ledger.state(queued.id) is JobState.QUEUED)
    # A deletion by someone else changes nothing.
    pool.deliver(deletion(Keys.generate(), queued.id))
    pool.deliver(deletion(CUSTOMER, queued.id))
    await pool.wait_for(lambda: ledger.state(queued.id) is JobState.CANCELLED)
    pool.deliver(deletion(CUSTOMER, running.id))
    await pool.wait_for(lambda: ledger.state(running.id) is JobState.CANCELLED)
    assert pool.results() == []
    assert queued.id not in engine.calls
    gate.set()
    after = make_request(CUSTOMER, prompt="after")
    pool.deliver(after)
    await pool.wait_for(lambda: ledger.state(after.id) is JobState.PUBLISHED)


async def test_deletion_before_the_request_cancels_it(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    engine = FakeEngine()
    await start_runner(engine=engine)
    request = make_request(CUSTOMER)
    pool.deliver(deletion(CUSTOMER, request.id))
    pool.deliver(request)
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.CANCELLED)
    assert engine.calls == []


async def test_full_queue_answers_busy(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    await start_runner(engine=engine, queue_size=1)
    first, second, third = (make_request(CUSTOMER, prompt=p) for p in ("1", "2", "3"))
    pool.deliver(first)
    await asyncio.to_thread(engine.started.wait, 5)
    pool.deliver(second)
    pool.deliver(third)
    await pool.wait_for(lambda: ledger.state(third.id) is JobState.FAILED)
    await pool.wait_for(lambda: bool(pool.statuses(third.id)))
    [(status, message)] = pool.statuses(third.id)
    assert status == "error"
    assert message is not None
    assert "busy" in message
    assert ("processing", "queued: position 1") in pool.statuses(second.id)
    gate.set()
    await pool.wait_for(lambda: ledger.state(second.id) is JobState.PUBLISHED)
    assert ledger.state(first.id) is JobState.PUBLISHED


async def test_progress_feedback_is_rate_limited(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    engine = FakeEngine(steps=200)
    await start_runner(
        engine=engine, options=RunnerOptions(progress_interval_s=3600.0, shutdown_timeout_s=1.0)
    )
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)
    processing = [m for s, m in pool.statuses(request.id) if s == "processing"]
    assert processing == ["generating"]  # 200 steps, one interval: no step feedback


async def test_progress_feedback_reports_steps(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    await start_runner(engine=FakeEngine(steps=4))
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)
    await pool.wait_for(lambda: any("step 2/4" in (m or "") for _, m in pool.statuses(request.id)))


class Payments:
    def __init__(self, paid: bool | None) -> None:
        self.paid = paid  # None: never answers
        self.asked: list[int] = []

    async def invoice(self, job: ImageJob, amount_msats: int) -> str | None:
        self.asked.append(amount_msats)
        return "lnbc210n1fakeinvoice"

    async def wait_paid(self, job: ImageJob, amount_msats: int, bolt11: str | None) -> bool:
        if self.paid is None:
            await asyncio.sleep(3600)
        return bool(self.paid)


async def test_priced_job_asks_for_payment_then_runs_once_paid(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    payments = Payments(paid=True)
    await start_runner(pricing=lambda job: 21_000, payment_check=payments)
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)
    [required] = [
        e for e in pool.events_of(7000, request.id) if e.tag_value("status") == "payment-required"
    ]
    assert required.first_tag("amount") == ("amount", "21000", "lnbc210n1fakeinvoice")
    assert payments.asked == [21_000]
    assert JobState.PAYMENT_REQUIRED in [s for s, _, _ in ledger.history(request.id)]


async def test_what_the_engine_plan_refuses_is_rejected_before_payment_or_generation(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    engine = FakeEngine(refuse_models=frozenset({"dall-e"}))
    payments = Payments(paid=True)
    await start_runner(engine=engine, pricing=lambda job: 21_000, payment_check=payments)
    refused = make_request(CUSTOMER, ("model", "dall-e"))
    served = make_request(CUSTOMER, ("model", "fake"), prompt="a served one")
    pool.deliver(refused)
    pool.deliver(served)
    await pool.wait_for(lambda: ledger.state(served.id) is JobState.PUBLISHED)
    await pool.wait_for(lambda: ledger.state(refused.id) is JobState.REJECTED)
    [(status, message)] = pool.statuses(refused.id)
    assert status == "error"
    assert message is not None
    assert "dall-e" in message
    assert engine.planned == [refused.id, served.id]
    assert engine.calls == [served.id]  # the refused one never reached generate
    assert payments.asked == [21_000]  # and nobody was asked to pay for it


async def test_unpaid_job_times_out_with_an_error_and_low_bids_are_refused(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    engine = FakeEngine()
    await start_runner(
        engine=engine,
        pricing=lambda job: 21_000,
        payment_check=Payments(paid=None),
        options=RunnerOptions(payment_timeout_s=0.2, shutdown_timeout_s=1.0),
    )
    unpaid = make_request(CUSTOMER)
    low_bid = make_request(CUSTOMER, extra_tags=[("bid", "1000")], prompt="cheap")
    pool.deliver(unpaid)
    pool.deliver(low_bid)
    await pool.wait_for(lambda: ledger.state(unpaid.id) is JobState.FAILED)
    await pool.wait_for(lambda: ledger.state(low_bid.id) is JobState.REJECTED)
    await pool.wait_for(lambda: len(pool.statuses(unpaid.id)) == 2)
    assert pool.statuses(unpaid.id)[-1] == ("error", "payment was not received in time")
    await pool.wait_for(lambda: bool(pool.statuses(low_bid.id)))
    [(_, reason)] = pool.statuses(low_bid.id)
    assert reason is not None
    assert "21000" in reason
    assert "1000" in reason
    assert engine.calls == []


async def test_encrypted_request_gets_an_encrypted_result(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    await start_runner()
    for scheme in (EncryptionScheme.NIP44, EncryptionScheme.NIP04):
        secret_tags = [["i", "a secret ostrich", "text"], ["param", "ratio", "1:1"]]
        content = encrypt(json.dumps(secret_tags), CUSTOMER, PROVIDER.public_key, scheme)
        from nostr_imagegen.nostr.event import UnsignedEvent

        request = sign_event(
            UnsignedEvent(
                kind=5100,
                tags=(("p", PROVIDER.public_key), ("encrypted",)),
                content=content,
            ),
            CUSTOMER,
        )
        pool.deliver(request)
        await pool.wait_for(_in_state(ledger, request.id, JobState.PUBLISHED))
        [result] = pool.results(request.id)
        assert result.first_tag("encrypted") == ("encrypted",)
        assert "ostrich" not in result.to_json().split('"request"')[0]
        assert result_urls(result, CUSTOMER)[0].startswith("https://img.test/")
        statuses = pool.statuses(request.id, CUSTOMER)
        assert statuses[-1][0] == "success"


async def test_restart_republishes_the_stored_answer_without_generating(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    """The process died after signing the result, before a relay took it."""
    refuse = {"on": True}
    pool.accept = lambda event: not refuse["on"]
    first_engine = FakeEngine()
    first = await start_runner(engine=first_engine)
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.UPLOADED)
    await pool.wait_for(lambda: bool(pool.results(request.id)))
    await first.stop(timeout_s=1.0)
    stored = ledger.get(request.id)
    assert stored is not None
    assert stored.state is JobState.UPLOADED
    signed = stored.answer[0]

    refuse["on"] = False
    engine = FakeEngine()
    fresh = FakePool()
    await start_runner(engine=engine, pool=fresh)
    await fresh.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)
    assert fresh.results(request.id) == [signed]  # the very same event, same id
    assert engine.calls == []


async def test_outbox_retries_until_a_relay_acknowledges(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    attempts = {"n": 0}

    def accept(event: Event) -> bool:
        if event.kind != 6100:
            return True
        attempts["n"] += 1
        return attempts["n"] >= 3  # relays are down for the first two tries

    pool.accept = accept
    await start_runner()
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED, timeout_s=15)
    results = pool.results(request.id)
    assert len(results) == 3
    assert len({event.id for event in results}) == 1


async def test_restart_resumes_unfinished_jobs_and_uploads_generated_images(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    processing = make_request(CUSTOMER, prompt="was processing")
    generated = make_request(CUSTOMER, prompt="was generated")
    crashed_twice = make_request(CUSTOMER, prompt="crashes the service")
    for request in (processing, generated, crashed_twice):
        ledger.claim(request, relay="ws://relay.test")
        ledger.transition(request.id, JobState.ACCEPTED)
        ledger.transition(request.id, JobState.QUEUED)
        ledger.transition(request.id, JobState.PROCESSING)
    ledger.transition(crashed_twice.id, JobState.QUEUED)
    ledger.transition(crashed_twice.id, JobState.PROCESSING)  # second attempt
    import hashlib

    data = b"\x89PNG stored bytes"
    image = StoredImage(
        mime="image/png",
        sha256=hashlib.sha256(data).hexdigest(),
        width=16,
        height=12,
        size_bytes=len(data),
        data=data,
    )
    ledger.record_generated(generated.id, [image])

    engine = FakeEngine()
    host = FakeHost()
    await start_runner(engine=engine, hosts=[host])
    await pool.wait_for(lambda: ledger.state(processing.id) is JobState.PUBLISHED)
    await pool.wait_for(lambda: ledger.state(generated.id) is JobState.PUBLISHED)
    await pool.wait_for(lambda: ledger.state(crashed_twice.id) is JobState.FAILED)
    assert engine.calls == [processing.id]
    assert host.stored[image.sha256] == data
    [result] = pool.results(generated.id)
    assert result_urls(result) == (f"https://img.test/{image.sha256}.png",)
    assert len(pool.results(processing.id)) == 1
    assert pool.results(crashed_twice.id) == []


async def test_graceful_stop_puts_an_unfinished_job_back_for_the_next_start(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    runner = await start_runner(engine=engine)
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await asyncio.to_thread(engine.started.wait, 5)
    await runner.stop(timeout_s=0.1)
    assert ledger.state(request.id) is JobState.QUEUED
    assert ("queued", "interrupted by shutdown") in [
        (s.value, d) for s, _, d in ledger.history(request.id)
    ]
    interrupted = ledger.get(request.id)
    assert interrupted is not None
    assert interrupted.attempts == 0  # not held against the job: it did not crash anything
    gate.set()
    await start_runner(engine=FakeEngine())
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)


async def test_graceful_stop_lets_a_quick_job_finish(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    runner = await start_runner(engine=engine)
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await asyncio.to_thread(engine.started.wait, 5)
    asyncio.get_running_loop().call_later(0.2, gate.set)
    await runner.stop(timeout_s=10.0)
    assert ledger.state(request.id) is JobState.PUBLISHED


async def test_hostile_events_never_stop_the_runner(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    await start_runner()
    hostile = [
        make_request(CUSTOMER, prompt=""),
        make_request(CUSTOMER, ("size", "99999x99999")),
        make_request(CUSTOMER, ("upscale", "1e308")),
        make_request(CUSTOMER, ("model", "../../etc/passwd")),
        make_request(CUSTOMER, extra_tags=[("x" * 10_000,) for _ in range(200)]),
        make_request(CUSTOMER, extra_tags=[("encrypted",)], content="not encrypted at all"),
        make_request(CUSTOMER, extra_tags=[("relays", "ws://10.0.0.1", "wss://[::1]")]),
        make_request(CUSTOMER, kind=5101),
        deletion(CUSTOMER, "zz" * 32),
    ]
    for event in hostile:
        pool.deliver(event)
    valid = make_request(CUSTOMER, prompt="still served")
    pool.deliver(valid)
    await pool.wait_for(lambda: ledger.state(valid.id) is JobState.PUBLISHED)
    relayed = make_request(CUSTOMER, extra_tags=[("relays", "ws://10.0.0.1", "wss://[::1]")])
    pool.deliver(relayed)
    await pool.wait_for(lambda: ledger.state(relayed.id) is JobState.PUBLISHED)
    # Private relays named by a stranger are not handed to the pool.
    assert all(targets is None for event, targets in pool.published if event.kind == 6100)


async def test_announcement_lists_what_the_engine_offers(
    pool: FakePool, start_runner: RunnerFactory
) -> None:
    await start_runner(announcement=Announcement(name="Test DVM", about="tiny pictures"))
    await pool.wait_for(lambda: bool(pool.events_of(31990)))
    [info] = pool.events_of(31990)
    assert info.pubkey == PROVIDER.public_key
    assert ("k", "5100") in info.tags
    content = json.loads(info.content)
    assert content["name"] == "Test DVM"
    assert content["nip90Params"]["model"]["values"] == ["fake", "fake-xl"]


async def test_result_for_the_request_relays_when_public(
    pool: FakePool, ledger: Ledger, start_runner: RunnerFactory
) -> None:
    await start_runner()
    request = make_request(
        CUSTOMER, extra_tags=[("relays", "wss://relay.example.com", "wss://127.0.0.1:7777")]
    )
    pool.deliver(request)
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)
    [targets] = [t for e, t in pool.published if e.kind == 6100]
    assert targets == ("wss://relay.example.com",)
    parsed = parse_result(pool.results(request.id)[0])
    assert parsed.request_id == request.id
