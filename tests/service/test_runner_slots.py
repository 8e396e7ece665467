"""JobRunner over several engine slots: batches, engines that die mid-job, shutdown.

Fakes only (no torch): a fake engine that batches, a slot whose engine dies, the fake pool.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from _runner_fakes import (
    FakeEngine,
    FakeHost,
    FakePool,
    FakeResult,
    deletion,
    make_request,
    result_urls,
)
from PIL import Image

from nostr_imagegen.errors import EngineUnavailable, JobCancelled, NostrImagegenError
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.ledger import JobState, Ledger
from nostr_imagegen.service.localslot import LocalSlot
from nostr_imagegen.service.runner import JobRunner, RunnerOptions
from nostr_imagegen.service.scaling import SchedulerSettings
from nostr_imagegen.service.slots import EncodeSettings, EngineTask, TaskOutcome

PROVIDER = Keys.generate()
CUSTOMER = Keys.generate()


@dataclass(frozen=True)
class Plan:
    model: str
    batch_key: Hashable | None


@dataclass
class BatchingEngine(FakeEngine):
    """A ``FakeEngine`` that plans every job as model "m" with one batch key and runs
    several in one ``generate_batch`` call, each job cancellable on its own."""

    most: int = 4
    batches: list[list[str]] = field(default_factory=list)

    def plan(self, job: ImageJob) -> Plan:  # type: ignore[override]
        return Plan("m", ("m", 64))

    def loaded_models(self) -> frozenset[str]:
        return frozenset({"m"})

    def max_batch(self, model: str) -> int:
        return self.most

    def generate_batch(self, requests: Sequence[Any]) -> list[FakeResult | NostrImagegenError]:
        self.batches.append([request.job.id for request in requests])
        self.started.set()
        if self.gate is not None:
            while not self.gate.wait(0.01):
                if all(r.cancel is not None and r.cancel.is_set() for r in requests):
                    break
        outcomes: list[FakeResult | NostrImagegenError] = []
        for index, request in enumerate(requests):
            if request.cancel is not None and request.cancel.is_set():
                outcomes.append(JobCancelled("cancelled"))
                continue
            color = (index * 60 % 256, 10, 20)
            outcomes.append(FakeResult((Image.new("RGB", (8, 8), color),), seed=index, model="m"))
        return outcomes


class DyingSlot:
    """A slot whose engine dies under every job (a Ray worker killed mid-job)."""

    name = "dying"

    def __init__(self, on_death: Callable[[], None] = lambda: None) -> None:
        self.available = True
        self.runs = 0
        self._on_death = on_death

    def loaded_models(self) -> frozenset[str]:
        return frozenset()

    def max_batch(self, model: str) -> int:
        return 1

    async def run(self, tasks: Sequence[EngineTask]) -> list[TaskOutcome]:
        self.runs += 1
        self._on_death()
        return [EngineUnavailable("the worker died") for _ in tasks]

    async def close(self) -> None:
        pass


class LateSlot(LocalSlot):
    """A ``LocalSlot`` that is unavailable until told otherwise (a worker still starting)."""

    def __init__(self, engine: FakeEngine) -> None:
        super().__init__(engine, name="late", encode=EncodeSettings())
        self.up = False
        self.runs = 0

    @property
    def available(self) -> bool:
        return self.up

    async def run(self, tasks: Sequence[EngineTask]) -> list[TaskOutcome]:
        self.runs += 1
        return await super().run(tasks)


@pytest.fixture
async def start_runner(pool: FakePool, ledger: Ledger) -> AsyncIterator[Callable[..., Any]]:
    runners: list[JobRunner] = []

    async def start(**kwargs: Any) -> JobRunner:
        kwargs.setdefault("hosts", [FakeHost()])
        kwargs.setdefault(
            "options",
            RunnerOptions(progress_interval_s=0.0, shutdown_timeout_s=2.0, max_attempts=2),
        )
        runner = JobRunner(keys=PROVIDER, pool=pool, ledger=ledger, **kwargs)
        await runner.start()
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        await runner.stop(timeout_s=1.0)


async def test_two_engines_run_two_jobs_at_once(start_runner: Any, pool: FakePool) -> None:
    gate = threading.Event()
    engines = [FakeEngine(gate=gate), FakeEngine(gate=gate)]
    runner = await start_runner(engine=engines)
    requests = [make_request(CUSTOMER, prompt=f"job {i}") for i in range(2)]
    for request in requests:
        pool.deliver(request)
    await pool.wait_for(lambda: all(e.started.is_set() for e in engines), what="both running")
    assert runner.engines_busy == 2
    gate.set()
    await pool.wait_for(lambda: all(pool.results(r.id) for r in requests), what="results")
    assert [len(pool.results(r.id)) for r in requests] == [1, 1]


async def test_compatible_jobs_share_one_call_and_each_gets_its_own_answer(
    start_runner: Any, pool: FakePool, ledger: Ledger
) -> None:
    engine = BatchingEngine(most=3)
    await start_runner(engine=engine, scheduling=SchedulerSettings(batch_wait_ms=2000))
    requests = [make_request(CUSTOMER, prompt=f"job {i}") for i in range(3)]
    for request in requests:
        pool.deliver(request)
    await pool.wait_for(lambda: all(pool.results(r.id) for r in requests), what="results")
    assert engine.batches == [[r.id for r in requests]]
    results = [pool.results(r.id) for r in requests]
    assert [len(found) for found in results] == [1, 1, 1]
    urls = {result_urls(found[0]) for found in results}
    assert len(urls) == 3  # each job its own image
    assert all(ledger.state(r.id) in (JobState.UPLOADED, JobState.PUBLISHED) for r in requests)


async def test_cancelling_one_job_of_a_running_batch_leaves_the_others(
    start_runner: Any, pool: FakePool, ledger: Ledger
) -> None:
    gate = threading.Event()
    engine = BatchingEngine(most=2, gate=gate)
    runner = await start_runner(engine=engine, scheduling=SchedulerSettings(batch_wait_ms=2000))
    kept, cancelled = (make_request(CUSTOMER, prompt=f"job {i}") for i in range(2))
    pool.deliver(kept)
    pool.deliver(cancelled)
    await pool.wait_for(lambda: bool(engine.batches), what="the batch running")
    (running,) = [a for a in runner.active_jobs() if a.job.id == cancelled.id]
    pool.deliver(deletion(CUSTOMER, cancelled.id))
    await pool.wait_for(running.cancel.is_set, what="the cancel flag")
    gate.set()  # the engine reads each job's flag: one stops, the other finishes
    await pool.wait_for(lambda: bool(pool.results(kept.id)), what="the other's result")
    await pool.wait_for(
        lambda: ledger.state(cancelled.id) is JobState.CANCELLED, what="cancel recorded"
    )
    assert pool.results(cancelled.id) == []
    assert len(pool.results(kept.id)) == 1
    assert engine.batches == [[kept.id, cancelled.id]]


async def test_a_job_whose_engine_died_runs_again_on_another_and_is_answered_once(
    start_runner: Any, pool: FakePool, ledger: Ledger
) -> None:
    engine = FakeEngine()
    late = LateSlot(engine)

    def bring_up() -> None:
        late.up = True

    dying = DyingSlot(on_death=bring_up)
    await start_runner(engine=engine, slots=[dying, late])
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: bool(pool.results(request.id)), what="the result")
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED, what="published")
    assert (dying.runs, late.runs) == (1, 1)
    assert len(pool.results(request.id)) == 1
    assert [s for s, _ in pool.statuses(request.id)].count("error") == 0
    record = ledger.get(request.id)
    assert record is not None
    assert record.attempts == 2
    await late.close()


async def test_after_max_attempts_deaths_the_job_gets_one_error(
    start_runner: Any, pool: FakePool, ledger: Ledger
) -> None:
    dying = DyingSlot()
    await start_runner(engine=FakeEngine(), slots=[dying])
    request = make_request(CUSTOMER)
    pool.deliver(request)
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.FAILED, what="failed")
    await pool.wait_for(lambda: "error" in dict(pool.statuses(request.id)), what="the error")
    errors = [m for s, m in pool.statuses(request.id) if s == "error"]
    assert len(errors) == 1
    assert errors[0] is not None
    assert "engine died" in errors[0]
    assert dying.runs == 2  # max_attempts
    assert pool.results(request.id) == []


async def test_stop_interrupts_a_running_batch_and_keeps_its_jobs_for_the_restart(
    start_runner: Any, pool: FakePool, ledger: Ledger
) -> None:
    gate = threading.Event()
    engine = BatchingEngine(most=2, gate=gate)
    runner = await start_runner(engine=engine, scheduling=SchedulerSettings(batch_wait_ms=2000))
    requests = [make_request(CUSTOMER, prompt=f"job {i}") for i in range(2)]
    for request in requests:
        pool.deliver(request)
    await pool.wait_for(lambda: bool(engine.batches), what="the batch running")
    await runner.stop(timeout_s=0.1)
    for request in requests:
        assert ledger.state(request.id) is JobState.QUEUED
        record = ledger.get(request.id)
        assert record is not None
        assert record.attempts == 0
        assert pool.results(request.id) == []
        assert "error" not in dict(pool.statuses(request.id))


async def test_a_runner_needs_engines_that_generate_unless_given_slots(
    ledger: Ledger, pool: FakePool
) -> None:
    from nostr_imagegen.errors import ConfigError

    class PlanOnly:
        def plan(self, job: ImageJob) -> None:
            return None

        def offered(self) -> Any:
            return FakeEngine().offered()

    with pytest.raises(ConfigError, match="cannot generate"):
        JobRunner(keys=PROVIDER, pool=pool, ledger=ledger, engine=PlanOnly(), hosts=[])
    runner = JobRunner(
        keys=PROVIDER, pool=pool, ledger=ledger, engine=PlanOnly(), hosts=[], slots=[DyingSlot()]
    )
    assert len(runner.slots) == 1
