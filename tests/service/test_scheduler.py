"""The scheduler's policy, driven by hand: fake slots, a fake clock, real jobs.

Time moves only when a test calls ``clock.advance``; a ``take`` that should wait is a task
that is not done after the loop has run everything it could (``settle``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Hashable
from dataclasses import dataclass, field

import pytest
from _runner_fakes import make_request

from nostr_imagegen.imagejob.request import parse_image_job
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.jobqueue import ActiveJob
from nostr_imagegen.service.scaling import SchedulerSettings
from nostr_imagegen.service.scheduler import Scheduler

CUSTOMER = Keys.generate()
_prompts = itertools.count()


class FakeClock:
    """``clock()`` reads the time; ``await clock.sleep(s)`` returns once ``advance`` passed it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.zero_sleeps = 0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:  # as asyncio.sleep(0): back at once
            self.zero_sleeps += 1
            await asyncio.sleep(0)
            return
        wake = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, wake))
        await wake

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for at, wake in self._sleepers:
            if at <= self.now and not wake.done():
                wake.set_result(None)
        self._sleepers = [(at, wake) for at, wake in self._sleepers if not wake.done()]


@dataclass
class FakeSlot:
    models: set[str] = field(default_factory=set)
    most: int = 1
    available: bool = True
    name: str = "fake"

    def loaded_models(self) -> frozenset[str]:
        return frozenset(self.models)

    def max_batch(self, model: str) -> int:
        return self.most


@dataclass(frozen=True)
class Plan:
    model: str
    batch_key: Hashable | None


def job(model: str | None, key: str | None = "") -> ActiveJob:
    """A queued job of ``model``; ``key`` names its batch key ('' : one per model, None:
    never batched)."""
    event = make_request(CUSTOMER, prompt=f"prompt {next(_prompts)}")
    plan = None if model is None else Plan(model, (model, key) if key is not None else None)
    return ActiveJob(job=parse_image_job(event), relay=None, reply_relays=(), plan=plan)


def scheduler(
    *slots: FakeSlot, clock: FakeClock, capacity: int = 100, **settings: object
) -> Scheduler:
    chosen = SchedulerSettings.model_validate({"batch_wait_ms": 0, **settings})
    return Scheduler(slots, chosen, capacity=capacity, clock=clock, sleep=clock.sleep)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_a_free_slot_takes_the_job_of_its_loaded_model_over_an_older_one(
    clock: FakeClock,
) -> None:
    sched = scheduler(FakeSlot({"a"}), clock=clock)
    older_b, a = job("b"), job("a")
    sched.put(older_b)
    sched.put(a)
    assert await sched.take(0) == [a]
    assert await sched.take(0) == [older_b]  # nothing of "a" left: it loads "b"


async def test_a_model_nobody_holds_goes_to_a_free_slot_and_others_wait_for_their_slot(
    clock: FakeClock,
) -> None:
    sched = scheduler(FakeSlot({"a"}), FakeSlot({"b"}), clock=clock, spill_after=4)
    running_b, waiting_b, c = job("b"), job("b"), job("c")
    sched.put(running_b)
    assert await sched.take(1) == [running_b]  # slot 1 is busy with "b" now
    sched.put(waiting_b)
    sched.put(c)
    # Slot 0 holds "a": the older "b" job waits for slot 1, the "c" job nobody holds is its.
    assert await sched.take(0) == [c]
    sched.done(1)
    assert await sched.take(1) == [waiting_b]


async def test_a_backlog_of_a_busy_model_spills_to_a_free_slot_past_spill_after(
    clock: FakeClock,
) -> None:
    sched = scheduler(FakeSlot({"a"}), FakeSlot({"b"}), clock=clock, spill_after=3)
    first = job("a")
    sched.put(first)
    assert await sched.take(0) == [first]  # slot 0 runs "a" now
    backlog = [job("a"), job("a")]
    for active in backlog:
        sched.put(active)
    free = asyncio.create_task(sched.take(1))
    await settle()
    assert not free.done()  # two queued "a" jobs: cheaper to wait for slot 0
    third = job("a")
    sched.put(third)
    await settle()
    assert free.done()
    assert free.result() == [backlog[0]]


async def test_no_job_is_passed_over_longer_than_max_wait_under_a_skewed_mix(
    clock: FakeClock,
) -> None:
    sched = scheduler(FakeSlot({"a"}), clock=clock, max_wait_s=60.0)
    for _ in range(20):
        sched.put(job("a"))
    lonely = job("b")
    sched.put(lonely)
    queued_at = clock.now
    taken_at = None
    for _ in range(200):  # each job takes 1 s, and a new "a" job arrives meanwhile
        batch = await sched.take(0)
        if lonely in batch:
            taken_at = clock.now
            break
        clock.advance(1.0)
        sched.put(job("a"))
    assert taken_at is not None, "the 'b' job starved"
    # Passed over while it was young (first in, first out would have taken it after the 20
    # older jobs, at 20 s: the slot kept its loaded model instead), never past the bound
    # plus the job running when it became overdue.
    assert 60.0 <= taken_at - queued_at <= 61.0


async def test_a_batch_takes_compatible_jobs_up_to_max_batch_and_leaves_the_others(
    clock: FakeClock,
) -> None:
    sched = scheduler(FakeSlot({"a"}, most=3), clock=clock)
    jobs = [job("a", "k1"), job("a", "k2"), job("a", "k1"), job("b", "k1"), job("a", "k1")]
    jobs.append(job("a", "k1"))
    for active in jobs:
        sched.put(active)
    assert await sched.take(0) == [jobs[0], jobs[2], jobs[4]]
    assert sched.ids() == [jobs[1].job.id, jobs[3].job.id, jobs[5].job.id]
    # Jobs without a batch key (img2img) run alone.
    lone = [job("c", None), job("c", None)]
    sched2 = scheduler(FakeSlot({"c"}, most=4), clock=clock)
    for active in lone:
        sched2.put(active)
    assert await sched2.take(0) == [lone[0]]


async def test_a_batch_waits_batch_wait_ms_for_compatible_jobs(clock: FakeClock) -> None:
    sched = scheduler(FakeSlot({"a"}, most=4), clock=clock, batch_wait_ms=20)
    first, late, other = job("a"), job("a"), job("b")
    sched.put(first)
    taking = asyncio.create_task(sched.take(0))
    await settle()
    assert not taking.done()
    sched.put(other)  # not compatible: does not end the wait, does not join
    sched.put(late)
    clock.advance(0.015)
    await settle()
    assert not taking.done()
    clock.advance(0.006)
    await settle()
    assert taking.result() == [first, late]

    alone = job("a")
    sched.put(alone)
    taking = asyncio.create_task(sched.take(0))
    await settle()
    assert sched.ids() == [other.job.id]  # the "b" job is not its, and waits
    clock.advance(0.021)
    await settle()
    assert taking.result() == [alone]  # nothing came: it goes alone after the wait


async def test_a_model_served_one_at_a_time_never_waits_for_a_batch(clock: FakeClock) -> None:
    sched = scheduler(FakeSlot({"a"}, most=1), clock=clock, batch_wait_ms=5000)
    only = job("a")
    sched.put(only)
    taking = asyncio.create_task(sched.take(0))
    await settle()
    assert taking.result() == [only]


async def test_batches_fill_at_once_when_enough_jobs_wait(clock: FakeClock) -> None:
    sched = scheduler(FakeSlot(set(), most=2), clock=clock, batch_wait_ms=5000)
    jobs = [job("a"), job("a")]
    for active in jobs:
        sched.put(active)
    taking = asyncio.create_task(sched.take(0))
    await settle()
    assert taking.result() == jobs


async def test_fifo_mode_takes_the_oldest_job_whatever_is_loaded(clock: FakeClock) -> None:
    sched = scheduler(FakeSlot({"a"}), clock=clock, model_aware=False)
    older_b, a = job("b"), job("a")
    sched.put(older_b)
    sched.put(a)
    assert await sched.take(0) == [older_b]
    assert await sched.take(0) == [a]


async def test_a_job_without_a_plan_has_no_affinity(clock: FakeClock) -> None:
    sched = scheduler(FakeSlot({"a"}), clock=clock)
    plain, a = job(None), job("a")
    sched.put(plain)
    sched.put(a)
    assert await sched.take(0) == [plain]


async def test_removed_jobs_leave_the_queue_and_positions_follow(clock: FakeClock) -> None:
    sched = scheduler(FakeSlot(), clock=clock, capacity=3)
    jobs = [job("a"), job("a"), job("b")]
    assert [sched.put(active) for active in jobs] == [1, 2, 3]
    assert sched.full()
    assert len(sched) == 3
    assert sched.put(job("c")) is None  # full
    assert sched.remove(jobs[0]) is True
    assert sched.remove(jobs[0]) is False
    assert sched.ids() == [jobs[1].job.id, jobs[2].job.id]
    forced = job("c")
    assert sched.put(forced) == 3
    assert sched.put(job("d"), force=True) == 4
    assert await sched.take(0) == [jobs[1]]


async def test_an_unavailable_slot_takes_nothing_until_it_is_back(clock: FakeClock) -> None:
    slot = FakeSlot({"a"}, available=False)
    sched = scheduler(slot, clock=clock)
    queued = job("a")
    sched.put(queued)
    taking = asyncio.create_task(sched.take(0))
    await settle()
    assert not taking.done()
    slot.available = True  # a restarted actor: nobody tells the scheduler, it looks again
    clock.advance(1.0)
    await settle()
    assert taking.result() == [queued]


async def test_a_waiting_slot_wakes_when_a_job_becomes_overdue(clock: FakeClock) -> None:
    sched = scheduler(FakeSlot({"a"}), FakeSlot({"b"}), clock=clock, max_wait_s=30.0)
    running = job("b")
    sched.put(running)
    assert await sched.take(1) == [running]
    stuck = job("b")  # its model's slot stays busy; one job is below spill_after
    sched.put(stuck)
    taking = asyncio.create_task(sched.take(0))
    for _ in range(29):
        clock.advance(1.0)
        await settle()
    assert not taking.done()
    clock.advance(1.0)
    await settle()
    assert taking.result() == [stuck]


async def test_a_job_whose_engine_died_keeps_its_place_and_prefers_another_slot(
    clock: FakeClock,
) -> None:
    sched = scheduler(FakeSlot(), FakeSlot(), clock=clock)
    died, younger = job("a"), job("a")
    sched.put(died)
    assert await sched.take(0) == [died]
    sched.put(younger)
    sched.requeue(died, failed_on=0)
    assert sched.ids() == [died.job.id, younger.job.id]
    assert await sched.take(0) == [younger]  # slot 0 failed it: it waits for slot 1
    assert await sched.take(1) == [died]


async def test_a_cancelled_take_puts_its_jobs_back(clock: FakeClock) -> None:
    sched = scheduler(FakeSlot({"a"}, most=4), clock=clock, batch_wait_ms=1000)
    first = job("a")
    sched.put(first)
    taking = asyncio.create_task(sched.take(0))
    await settle()
    assert sched.ids() == []  # held while the batch fills
    taking.cancel()
    await settle()
    assert sched.ids() == [first.job.id]


async def test_an_overdue_job_another_slot_must_take_does_not_spin_the_waiting_one(
    clock: FakeClock,
) -> None:
    sched = scheduler(FakeSlot(), FakeSlot(), clock=clock, max_wait_s=10.0)
    other, died = job("b"), job("a")
    sched.put(other)
    assert await sched.take(1) == [other]  # slot 1 is busy
    sched.put(died)
    assert await sched.take(0) == [died]
    sched.requeue(died, failed_on=0)  # it waits for slot 1
    clock.advance(20.0)  # overdue, but not for slot 0
    taking = asyncio.create_task(sched.take(0))
    await settle()
    assert not taking.done()
    assert clock.zero_sleeps == 0  # asleep on a timer, not spinning
    sched.done(1)
    assert await sched.take(1) == [died]
    taking.cancel()
