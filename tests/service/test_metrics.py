"""[metrics]: /metrics scraped over HTTP and parsed with prometheus_client's parser after a few
jobs, /healthz failing for no relay and for a stuck engine, the status data hiding what
encrypted jobs keep secret, and the loopback-only default."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _runner_fakes import FakeEngine, FakeHost, FakePool, make_request
from prometheus_client.parser import text_string_to_metric_families

from nostr_imagegen.errors import JobRejected
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.nostr.encryption import EncryptionScheme, encrypt
from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.ledger import JobState, Ledger
from nostr_imagegen.service.metrics import MetricsConfig, OpsServer, ServiceMetrics
from nostr_imagegen.service.policy import PolicyConfig, RequestPolicy
from nostr_imagegen.service.relay import RelayStatus
from nostr_imagegen.service.runner import JobRunner, RunnerOptions

PROVIDER = Keys.generate()


class StatusPool(FakePool):
    """A fake pool that reports relay connection states."""

    def __init__(self) -> None:
        super().__init__()
        self.connected = True

    def status(self) -> tuple[RelayStatus, ...]:
        return (RelayStatus("ws://relay.test", self.connected, 1, None),)


class PickyEngine(FakeEngine):
    def plan(self, job: ImageJob) -> None:
        if "refuse" in job.prompt:
            raise JobRejected("not offered")


@pytest.fixture
async def served(ledger: Ledger) -> AsyncIterator[tuple[StatusPool, JobRunner, OpsServer]]:
    pool = StatusPool()
    metrics = ServiceMetrics(stuck_after_s=600.0)
    runner = JobRunner(
        keys=PROVIDER,
        pool=pool,
        engine=PickyEngine(),
        hosts=[FakeHost()],
        ledger=ledger,
        options=RunnerOptions(progress_interval_s=0.0, shutdown_timeout_s=2.0),
        policy=RequestPolicy(PolicyConfig(max_jobs_per_minute=3)),
        **metrics.hooks(),
    )
    metrics.attach(runner, pool)
    await runner.start()
    async with OpsServer(metrics, "127.0.0.1", 0) as server:
        yield pool, runner, server
    await runner.stop(timeout_s=1.0)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_after_a_few_jobs_are_scraped_and_parsed(
    served: tuple[StatusPool, JobRunner, OpsServer], ledger: Ledger
) -> None:
    pool, _runner, server = served
    customer = Keys.generate()
    good = [make_request(customer, prompt=f"ostrich {n}") for n in range(2)]
    refused = make_request(customer, prompt="refuse this")
    throttled = make_request(customer, prompt="one too many")
    for request in [*good, refused, throttled]:
        pool.deliver(request)
    ended = (JobState.PUBLISHED, JobState.REJECTED)
    await pool.wait_for(
        lambda: all(ledger.state(r.id) in ended for r in [*good, refused, throttled])
    )
    async with httpx.AsyncClient() as client:
        response = await client.get(server.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    p = "nostr_imagegen_"
    assert samples[(p + "jobs_total", (("outcome", "received"),))] == 4
    assert samples[(p + "jobs_total", (("outcome", "succeeded"),))] == 2
    assert samples[(p + "jobs_total", (("outcome", "rejected"),))] == 2
    assert samples[(p + "policy_refusals_total", (("rule", "rate"),))] == 1
    assert samples[(p + "queue_depth", ())] == 0
    assert samples[(p + "engine_seconds_count", ())] == 2
    assert samples[(p + "job_latency_seconds_count", ())] == 2
    assert samples[(p + "relay_connected", (("relay", "ws://relay.test"),))] == 1
    assert (p + "pipelines_loaded", ()) in samples


async def test_healthz_fails_without_a_connected_relay_and_for_a_stuck_engine(
    served: tuple[StatusPool, JobRunner, OpsServer], ledger: Ledger
) -> None:
    pool, runner, server = served
    async with httpx.AsyncClient() as client:
        assert (await client.get(server.url + "/healthz")).json() == {
            "healthy": True,
            "problems": [],
        }
        pool.connected = False
        response = await client.get(server.url + "/healthz")
        assert response.status_code == 503
        assert response.json()["problems"] == ["no relay is connected"]
        pool.connected = True

        gate = threading.Event()
        engine = runner.engines[0]
        original = engine.generate

        def held(job: ImageJob, **kwargs: Any) -> Any:
            gate.wait(10)
            return original(job, **kwargs)

        engine.generate = held  # type: ignore[method-assign]
        metrics = server.metrics
        metrics.stuck_after_s = 0.05
        request = make_request(Keys.generate())
        pool.deliver(request)
        await pool.wait_for(lambda: ledger.state(request.id) is JobState.PROCESSING)
        try:
            await pool.wait_for(lambda: not metrics.health()[0])
            response = await client.get(server.url + "/healthz")
            assert response.status_code == 503
            assert "no progress" in response.json()["problems"][0]
        finally:
            gate.set()
        await pool.wait_for(lambda: ledger.state(request.id) is JobState.PUBLISHED)
        assert (await client.get(server.url + "/healthz")).status_code == 200


async def test_status_hides_the_prompt_and_image_of_encrypted_jobs(
    served: tuple[StatusPool, JobRunner, OpsServer], ledger: Ledger
) -> None:
    pool, _runner, server = served
    customer = Keys.generate()
    secret = "a secret ostrich nobody may read"
    inner = f'[["i", "{secret}", "text"]]'
    content = encrypt(inner, customer, PROVIDER.public_key, EncryptionScheme.NIP44)
    tags = (("p", PROVIDER.public_key), ("encrypted",))
    hidden = sign_event(UnsignedEvent(kind=5100, tags=tags, content=content), customer)
    plain = make_request(customer, prompt="a public ostrich")
    pool.deliver(hidden)
    pool.deliver(plain)
    await pool.wait_for(
        lambda: all(ledger.state(r.id) is JobState.PUBLISHED for r in (hidden, plain))
    )
    async with httpx.AsyncClient() as client:
        text = (await client.get(server.url + "/status.json")).text
        page = (await client.get(server.url + "/")).text
    assert secret not in text
    assert PROVIDER.secret_hex() not in text
    status = httpx.Response(200, text=text).json()
    lines = {line["id"]: line for line in status["recent"]}
    assert lines[hidden.id]["encrypted"] is True
    assert lines[hidden.id]["status"] == "success"
    assert lines[hidden.id]["prompt"] is None
    assert lines[hidden.id]["thumbnail"] is None
    assert lines[plain.id]["prompt"] == "a public ostrich"
    assert lines[plain.id]["thumbnail"].startswith("https://")
    assert '<script src="/status.js">' in page


def test_metrics_bind_loopback_unless_told_otherwise() -> None:
    assert MetricsConfig(listen="127.0.0.1:9464").listen_address() == ("127.0.0.1", 9464)
    assert MetricsConfig(listen="[::1]:9464").listen_address() == ("::1", 9464)
    with pytest.raises(ValueError, match="not a loopback address"):
        MetricsConfig(listen="0.0.0.0:9464")
    assert MetricsConfig(listen="0.0.0.0:9464", allow_public=True).listen is not None


class Payments:
    """Pays the jobs whose prompt does not say "unpaid"."""

    async def invoice(self, job: ImageJob, amount_msats: int) -> str | None:
        return "lnbc210n1fakeinvoice"

    async def wait_paid(self, job: ImageJob, amount_msats: int, bolt11: str | None) -> bool:
        return "unpaid" not in job.prompt


async def test_payments_by_outcome_and_earnings(ledger: Ledger) -> None:
    pool = StatusPool()
    metrics = ServiceMetrics()
    runner = JobRunner(
        keys=PROVIDER,
        pool=pool,
        engine=FakeEngine(),
        hosts=[FakeHost()],
        ledger=ledger,
        options=RunnerOptions(progress_interval_s=0.0, shutdown_timeout_s=2.0),
        pricing=lambda job: 21_000,
        payment_check=Payments(),
        **metrics.hooks(),
    )
    metrics.attach(runner, pool)
    await runner.start()
    try:
        paid = make_request(Keys.generate(), prompt="a paid ostrich")
        unpaid = make_request(Keys.generate(), prompt="an unpaid ostrich")
        pool.deliver(paid)
        pool.deliver(unpaid)
        await pool.wait_for(lambda: ledger.state(paid.id) is JobState.PUBLISHED)
        await pool.wait_for(
            lambda: (
                metrics.registry.get_sample_value(
                    "nostr_imagegen_payments_total", {"outcome": "unpaid"}
                )
                == 1
            )
        )
        async with OpsServer(metrics) as server, httpx.AsyncClient() as client:
            samples = _samples((await client.get(server.url + "/metrics")).text)
            status = (await client.get(server.url + "/status.json")).json()
    finally:
        await runner.stop(timeout_s=1.0)
    p = "nostr_imagegen_"
    assert samples[(p + "payments_total", (("outcome", "requested"),))] == 2
    assert samples[(p + "payments_total", (("outcome", "paid"),))] == 1
    assert samples[(p + "payments_total", (("outcome", "unpaid"),))] == 1
    assert samples[(p + "earned_msats_total", ())] == 21_000
    assert status["earned_msats"] == 21_000


class HoldingSlot:
    """An engine slot as the metrics see it: a name, what it holds, whether it takes jobs."""

    def __init__(self, name: str, models: frozenset[str], available: bool) -> None:
        self.name, self._models, self.available = name, models, available

    def loaded_models(self) -> frozenset[str]:
        return self._models

    def max_batch(self, model: str) -> int:
        return 1

    async def run(self, tasks: Any) -> list[Any]:
        raise AssertionError("not run here")

    async def close(self) -> None:
        pass


async def test_each_slot_shows_the_models_it_holds_and_whether_it_takes_jobs(
    ledger: Ledger,
) -> None:
    """Where the scheduler routes each model, for any kind of slot (a Ray worker too)."""
    metrics = ServiceMetrics()
    slots = [
        HoldingSlot("ray-worker-0", frozenset({"sdxl"}), True),
        HoldingSlot("ray-worker-1", frozenset({"flux", "sd15"}), False),
    ]
    runner = JobRunner(
        keys=PROVIDER, pool=StatusPool(), engine=FakeEngine(), slots=slots,
        hosts=[FakeHost()], ledger=ledger,
    )  # fmt: skip
    metrics.attach(runner, StatusPool())
    get = metrics.registry.get_sample_value
    p = "nostr_imagegen_"
    assert get(p + "slot_model_loaded", {"slot": "ray-worker-0", "model": "sdxl"}) == 1
    assert get(p + "slot_model_loaded", {"slot": "ray-worker-1", "model": "flux"}) == 1
    assert get(p + "slot_model_loaded", {"slot": "ray-worker-1", "model": "sd15"}) == 1
    assert get(p + "slot_model_loaded", {"slot": "ray-worker-0", "model": "sd15"}) is None
    assert get(p + "slot_available", {"slot": "ray-worker-0"}) == 1
    assert get(p + "slot_available", {"slot": "ray-worker-1"}) == 0
