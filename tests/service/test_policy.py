"""The [policy] abuse rules: each rule alone, their order, and the runner applying them
(refusals as `error` feedback with the reason, stale requests ignored in silence)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _runner_fakes import FakeEngine, FakeHost, FakePool, make_request

from nostr_imagegen.errors import ConfigError
from nostr_imagegen.imagejob.request import parse_image_job
from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.pow import committed_target, difficulty, mine
from nostr_imagegen.service.config import ServiceConfig
from nostr_imagegen.service.ledger import JobState, Ledger
from nostr_imagegen.service.policy import PolicyConfig, RequestPolicy, WordListPolicy
from nostr_imagegen.service.policy.ratelimit import RateLimiter
from nostr_imagegen.service.runner import JobRunner, RunnerOptions

PROVIDER = Keys.generate()


class Clock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _policy(clock: Clock | None = None, **settings: object) -> RequestPolicy:
    return RequestPolicy(PolicyConfig.model_validate(settings), clock=clock or Clock())


def _request(
    customer: Keys, *, created_at: int | None = None, tags: tuple[tuple[str, ...], ...] = ()
):  # type: ignore[no-untyped-def]
    template = UnsignedEvent(
        kind=5100, tags=(("i", "an ostrich", "text"), *tags), created_at=created_at
    )
    return sign_event(template, customer)


# -- the rules one by one ------------------------------------------------------------------


def test_every_rule_is_off_by_default_but_expiration() -> None:
    policy = _policy()
    customer = Keys.generate()
    for _ in range(100):
        assert policy.refuse(_request(customer), active_jobs_of_customer=50) is None
    assert policy.refusals == {}


def test_rate_limit_per_minute_and_per_day_with_a_sliding_window() -> None:
    clock = Clock()
    limiter = RateLimiter({60.0: 2, 86400.0: 3}, clock=clock)
    assert limiter.exceeded("a") is None
    limiter.record("a")
    clock.now += 30
    limiter.record("a")
    assert limiter.exceeded("a") == (60.0, 2)
    assert limiter.exceeded("b") is None  # keys are counted apart
    clock.now += 31  # the first job left the minute window, the second is still in it
    assert limiter.exceeded("a") is None
    limiter.record("a")
    clock.now += 3600
    assert limiter.exceeded("a") == (86400.0, 3)
    clock.now += 86400
    assert limiter.exceeded("a") is None


def test_a_burst_from_one_key_is_throttled_while_another_key_is_served() -> None:
    clock = Clock()
    policy = _policy(clock, max_jobs_per_minute=3)
    spammer, other = Keys.generate(), Keys.generate()
    outcomes = [policy.refuse(_request(spammer), active_jobs_of_customer=0) for _ in range(10)]
    assert outcomes[:3] == [None, None, None]
    assert all(o is not None and o.rule == "rate" for o in outcomes[3:])
    assert outcomes[3] is not None
    assert outcomes[3].reason == "rate limit: at most 3 jobs per minute per customer"
    assert policy.refuse(_request(other), active_jobs_of_customer=0) is None
    clock.now += 61
    assert policy.refuse(_request(spammer), active_jobs_of_customer=0) is None
    assert policy.refusals["rate"] == 7


def test_global_cap_counts_all_customers_together() -> None:
    policy = _policy(global_max_jobs_per_minute=2)
    assert policy.refuse(_request(Keys.generate()), active_jobs_of_customer=0) is None
    assert policy.refuse(_request(Keys.generate()), active_jobs_of_customer=0) is None
    third = policy.refuse(_request(Keys.generate()), active_jobs_of_customer=0)
    assert third is not None
    assert third.rule == "global_rate"
    assert "at most 2 jobs per minute" in third.reason


def test_concurrent_jobs_per_customer() -> None:
    policy = _policy(max_concurrent_jobs=2)
    customer = Keys.generate()
    assert policy.refuse(_request(customer), active_jobs_of_customer=1) is None
    refused = policy.refuse(_request(customer), active_jobs_of_customer=2)
    assert refused is not None
    assert refused.rule == "concurrent"


def test_refused_requests_do_not_use_up_the_rate() -> None:
    policy = _policy(max_jobs_per_minute=1, max_concurrent_jobs=1)
    customer = Keys.generate()
    assert policy.refuse(_request(customer), active_jobs_of_customer=1) is not None
    assert policy.refuse(_request(customer), active_jobs_of_customer=0) is None


def test_allow_and_deny_lists_take_npub_or_hex_and_are_read_again_on_change(
    tmp_path: Path,
) -> None:
    alice, bob, carol = Keys.generate(), Keys.generate(), Keys.generate()
    allow = tmp_path / "allow.txt"
    allow.write_text(f"# customers\n{alice.npub}\n{bob.public_key}  # bob\nnot a key\n")
    deny = tmp_path / "deny.txt"
    deny.write_text(f"{bob.npub}\n")
    clock = Clock()
    policy = _policy(clock, allow_list=allow, deny_list=deny)
    assert policy.refuse(_request(alice), active_jobs_of_customer=0) is None
    denied = policy.refuse(_request(bob), active_jobs_of_customer=0)
    assert denied is not None
    assert denied.rule == "denied"
    outsider = policy.refuse(_request(carol), active_jobs_of_customer=0)
    assert outsider is not None
    assert outsider.rule == "not_allowed"

    allow.write_text(f"{alice.npub}\n{carol.npub}\n")
    stamp = time.time() + 5
    os.utime(allow, (stamp, stamp))  # a new mtime even on a coarse filesystem clock
    clock.now += 2
    assert policy.refuse(_request(carol), active_jobs_of_customer=0) is None
    allow.unlink()  # a botched edit keeps the last good list
    clock.now += 2
    assert policy.refuse(_request(carol), active_jobs_of_customer=0) is None
    assert policy.refuse(_request(Keys.generate()), active_jobs_of_customer=0) is not None


def test_a_missing_list_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key list"):
        _policy(allow_list=tmp_path / "nope.txt")


def test_pow_difficulty_counts_leading_zero_bits() -> None:
    assert difficulty("000000000e9d97a1ab09fc381030b346cdd7a142ad57e6df0b46dc9bef6c7e2d") == 36
    assert difficulty("002f" + "f" * 60) == 10
    assert difficulty("8" + "0" * 63) == 0
    assert difficulty("0" * 64) == 256


def test_pow_needs_the_difficulty_and_a_committed_target() -> None:
    customer = Keys.generate()
    policy = _policy(min_pow_bits=8)
    now = int(time.time())
    template = UnsignedEvent(kind=5100, tags=(("i", "an ostrich", "text"),))
    mined = sign_event(mine(template, customer.public_key, 8, created_at=now), customer)
    assert difficulty(mined.id) >= 8
    assert committed_target(mined) == 8
    assert policy.refuse(mined, active_jobs_of_customer=0) is None

    unmined = policy.refuse(_request(customer), active_jobs_of_customer=0)
    assert unmined is not None
    assert unmined.rule == "pow"
    # A lucky id is not enough: the nonce commits to a lower target (NIP-13).
    cheap = sign_event(mine(template, customer.public_key, 4, created_at=now), customer)
    while difficulty(cheap.id) < 8:
        now += 1
        cheap = sign_event(mine(template, customer.public_key, 4, created_at=now), customer)
    refused = policy.refuse(cheap, active_jobs_of_customer=0)
    assert refused is not None
    assert "committing to at least 8 bits" in refused.reason
    # A commitment without the work behind it is refused too.
    claimed = _request(customer, tags=(("nonce", "1", "8"),))
    if difficulty(claimed.id) < 8:
        refused = policy.refuse(claimed, active_jobs_of_customer=0)
        assert refused is not None
        assert "proof of work too low" in refused.reason


def test_expired_old_and_future_requests_are_ignored() -> None:
    clock = Clock()
    now = int(clock.now)
    customer = Keys.generate()
    policy = _policy(clock, max_age_s=300, max_future_s=60)
    expired = _request(customer, created_at=now, tags=(("expiration", str(now - 1)),))
    assert (policy.ignore(expired) or None) is not None
    assert policy.ignore(expired).rule == "expired"  # type: ignore[union-attr]
    later = _request(customer, created_at=now, tags=(("expiration", str(now + 60)),))
    assert policy.ignore(later) is None
    assert policy.ignore(_request(customer, created_at=now - 301)).rule == "too_old"  # type: ignore[union-attr]
    assert policy.ignore(_request(customer, created_at=now + 61)).rule == "future"  # type: ignore[union-attr]
    assert policy.ignore(_request(customer, created_at=now + 59)) is None
    off = _policy(clock, honour_expiration=False)
    assert off.ignore(expired) is None


def test_word_list_prompt_policy_matches_whole_words_and_phrases(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("# not served\nGore\nfamous   person\n")
    policy = WordListPolicy.from_file(words)
    customer = Keys.generate()

    def job(prompt: str):  # type: ignore[no-untyped-def]
        return parse_image_job(make_request(customer, prompt=prompt))

    assert policy(job("a lot of GORE, please")) is not None
    assert policy(job("a Famous\nPerson at the beach")) is not None
    assert policy(job("Al Gore's ostrich")) is not None
    assert policy(job("a gored ostrich")) is None  # a word that only starts the same
    assert policy(job("a gorgeous ostrich")) is None
    assert policy(job("a famous ostrich")) is None


def test_policy_section_in_the_service_toml_resolves_paths(tmp_path: Path) -> None:
    (tmp_path / "deny.txt").write_text("")
    data = {
        "models": {"m": {"source": "org/model", "family": "sd15", "default": True}},
        "service": {"relays": ["wss://relay.example"]},
        "storage": [{"type": "local", "folder": "img", "base_url": "https://img.example"}],
        "policy": {"max_jobs_per_minute": 5, "deny_list": "deny.txt"},
    }
    config = ServiceConfig.from_mapping(data, source=tmp_path / "dvm.toml")
    assert config.policy.max_jobs_per_minute == 5
    assert config.policy.deny_list == (tmp_path / "deny.txt").resolve()
    with pytest.raises(ConfigError):
        ServiceConfig.from_mapping({**data, "policy": {"max_jobs_per_minut": 5}})


# -- the runner applying them ---------------------------------------------------------------


@pytest.fixture
async def runner_with(ledger: Ledger) -> AsyncIterator[object]:
    started: list[JobRunner] = []

    async def start(pool: FakePool, policy: RequestPolicy) -> JobRunner:
        runner = JobRunner(
            keys=PROVIDER,
            pool=pool,
            engine=FakeEngine(),
            hosts=[FakeHost()],
            ledger=ledger,
            options=RunnerOptions(progress_interval_s=0.0, shutdown_timeout_s=2.0),
            policy=policy,
        )
        await runner.start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        await runner.stop(timeout_s=1.0)


async def test_runner_throttles_a_burst_and_serves_another_key(
    ledger: Ledger, runner_with: object
) -> None:
    pool = FakePool()
    clock = Clock(time.time())
    await runner_with(pool, _policy(clock, max_jobs_per_minute=2))  # type: ignore[operator]
    spammer, other = Keys.generate(), Keys.generate()
    burst = [make_request(spammer, prompt=f"ostrich {n}") for n in range(5)]
    for request in burst:
        pool.deliver(request)
    calm = make_request(other)
    pool.deliver(calm)
    ended = (JobState.PUBLISHED, JobState.REJECTED)
    await pool.wait_for(lambda: all(ledger.state(r.id) in ended for r in [*burst, calm]))
    assert [ledger.state(r.id) for r in burst] == [JobState.PUBLISHED] * 2 + [JobState.REJECTED] * 3
    assert ledger.state(calm.id) is JobState.PUBLISHED
    for request in burst[2:]:
        assert pool.statuses(request.id) == [
            ("error", "rate limit: at most 2 jobs per minute per customer")
        ]
        assert pool.results(request.id) == []


async def test_runner_ignores_expired_requests_without_an_answer(
    ledger: Ledger, runner_with: object
) -> None:
    pool = FakePool()
    await runner_with(pool, _policy(Clock(time.time())))  # type: ignore[operator]
    customer = Keys.generate()
    now = int(time.time())
    expired = make_request(customer, extra_tags=[("expiration", str(now - 5))])
    fresh = make_request(customer, extra_tags=[("expiration", str(now + 600))])
    pool.deliver(expired)
    pool.deliver(fresh)
    await pool.wait_for(lambda: ledger.state(fresh.id) is JobState.PUBLISHED)
    assert ledger.state(expired.id) is None  # not even recorded
    assert pool.statuses(expired.id) == []


async def test_runner_refuses_a_prompt_before_the_engine_sees_it(
    ledger: Ledger, runner_with: object
) -> None:
    pool = FakePool()
    policy = RequestPolicy(prompt_policy=WordListPolicy(["gore"]))
    runner = await runner_with(pool, policy)  # type: ignore[operator]
    request = make_request(Keys.generate(), prompt="so much gore")
    pool.deliver(request)
    await pool.wait_for(lambda: ledger.state(request.id) is JobState.REJECTED)
    [(status, message)] = pool.statuses(request.id)
    assert status == "error"
    assert message == "this service does not generate images for this prompt"
    assert runner.engines[0].calls == []
    assert policy.refusals["prompt"] == 1
