"""``ServiceMetrics``: the Prometheus metrics, the health verdict and the status page's data of
one running DVM.

It watches the runner through its hooks (``on_feedback``, ``on_result``, ``on_engine_time``:
``hooks()`` gives them) and reads the rest when scraped (``attach(runner, pool)``: queue,
job counters, relays, policy refusals, engine cache, GPU memory). Its own registry, not
prometheus_client's global one, so two runners (or two tests) never mix their numbers.

Metric names (all prefixed ``nostr_imagegen_``)::

    jobs_total{outcome}                 received, succeeded, failed, rejected, busy,
                                        cancelled, ignored, duplicate
    queue_depth                         jobs waiting for an engine
    engines_busy                        engine workers running a job
    job_latency_seconds                 histogram: request created_at to result published
    engine_seconds                      histogram: an engine's time per job (its share of a batch)
    payments_total{outcome}             requested, paid, unpaid
    earned_msats_total                  msats of delivered jobs that asked for payment
    relay_connected{relay}              1 connected, 0 not
    policy_refusals_total{rule}         [policy] refusals and silent ignores by rule
    chained_inputs_waiting              chained jobs waiting for their input
    pipelines_loaded                    models in the engine's pipeline cache
    slot_model_loaded{slot,model}       1 for each model an engine slot holds (local or a
                                        Ray worker): where the scheduler routes each model
    slot_available{slot}                1 taking jobs, 0 not (a Ray worker restarting)
    pipeline_cache_bytes                estimated bytes of those pipelines
    gpu_memory_allocated_bytes{device}  torch.cuda.memory_allocated, on CUDA only
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.service.metrics.board import JobBoard

__all__ = ["ServiceMetrics"]

_P = "nostr_imagegen_"
#: Seconds; image jobs take from a second (turbo models) to minutes (big ones, queued).
_LATENCY_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, float("inf"))
_ENGINE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, float("inf"))
_STATS_OUTCOMES = (
    ("received", "received"),
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("rejected", "rejected"),
    ("busy", "busy"),
    ("cancelled", "cancelled"),
    ("ignored", "ignored"),
    ("duplicates", "duplicate"),
)


class ServiceMetrics:
    """Metrics, health and status of one runner (see the module docstring)."""

    def __init__(self, *, recent_jobs: int = 50, stuck_after_s: float = 600.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.board = JobBoard(recent_jobs)
        self.stuck_after_s = stuck_after_s
        self.runner: Any = None
        self.pool: Any = None
        self._last_activity = time.monotonic()
        self.latency = Histogram(
            _P + "job_latency_seconds",
            "Seconds from a request's created_at to its result being published",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.engine_time = Histogram(
            _P + "engine_seconds",
            "Seconds of engine time per job (its share of a batch)",
            buckets=_ENGINE_BUCKETS,
            registry=self.registry,
        )
        self.payments = Counter(
            _P + "payments", "Payments by outcome", ["outcome"], registry=self.registry
        )
        self.earned = Counter(
            _P + "earned_msats", "Msats of delivered jobs that asked for payment",
            registry=self.registry,
        )  # fmt: skip
        self.registry.register(_RunnerCollector(self))

    def attach(self, runner: Any, pool: Any) -> None:
        """Read ``runner`` (a ``JobRunner``) and ``pool`` (its relay pool) when scraped."""
        self.runner = runner
        self.pool = pool

    # -- the runner's hooks ---------------------------------------------------------------

    def hooks(self) -> dict[str, Callable[..., None]]:
        """``on_feedback``, ``on_result``, ``on_engine_time`` for ``JobRunner``."""
        return {
            "on_feedback": self.on_feedback,
            "on_result": self.on_result,
            "on_engine_time": self.on_engine_time,
        }

    def on_feedback(self, event: Event) -> None:
        self._last_activity = time.monotonic()
        seen = self.board.feedback(event)
        if seen is None:
            return
        request_id, status = seen
        if status == "payment-required":
            self.payments.labels("requested").inc()
        elif status == "error" and self.board.payment_asked(request_id):
            self.payments.labels("unpaid").inc()

    def on_result(self, job: ImageJob, event: Event) -> None:
        self._last_activity = time.monotonic()
        self.latency.observe(max(0.0, time.time() - job.created_at))
        earned = self.board.result(job, event)
        if earned is not None:
            self.payments.labels("paid").inc()
            self.earned.inc(earned)

    def on_engine_time(self, job: ImageJob, seconds: float) -> None:
        self._last_activity = time.monotonic()
        self.engine_time.observe(seconds)

    # -- reading --------------------------------------------------------------------------

    def relays(self) -> list[dict[str, Any]]:
        status = getattr(self.pool, "status", None)
        if status is None:
            return []
        return [{"url": s.url, "connected": s.connected, "connects": s.connects} for s in status()]

    def health(self) -> tuple[bool, list[str]]:
        """``(healthy, problems)``: no relay connected, or an engine stuck on a job."""
        problems: list[str] = []
        relays = self.relays()
        if self.pool is not None and not any(r["connected"] for r in relays):
            problems.append("no relay is connected")
        busy = getattr(self.runner, "engines_busy", 0)
        quiet = time.monotonic() - self._last_activity
        if busy and quiet > self.stuck_after_s:
            problems.append(f"the engine has shown no progress for {quiet:.0f} s")
        return not problems, problems

    def status(self) -> dict[str, Any]:
        """The status page's data (JSON-ready)."""
        runner = self.runner
        active = runner.active_jobs() if runner is not None else []
        queued = runner.queued_ids() if runner is not None else []
        data = self.board.snapshot(active, queued)
        healthy, problems = self.health()
        stats = getattr(runner, "stats", None)
        data.update(
            relays=self.relays(),
            queue_depth=len(queued),
            engines_busy=getattr(runner, "engines_busy", 0),
            healthy=healthy,
            problems=problems,
            counts={label: getattr(stats, name, 0) for name, label in _STATS_OUTCOMES},
            provider=getattr(getattr(runner, "keys", None), "npub", None),
        )
        return data


class _RunnerCollector(Collector):
    """What is read from the runner, the pool and the engine at scrape time."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        runner = self._metrics.runner
        jobs = CounterMetricFamily(_P + "jobs", "Job requests by outcome", labels=["outcome"])
        stats = getattr(runner, "stats", None)
        for name, label in _STATS_OUTCOMES:
            jobs.add_metric([label], getattr(stats, name, 0))
        yield jobs
        yield GaugeMetricFamily(
            _P + "queue_depth", "Jobs waiting for an engine", getattr(runner, "queue_depth", 0)
        )
        yield GaugeMetricFamily(
            _P + "engines_busy", "Engine workers running a job", getattr(runner, "engines_busy", 0)
        )
        relays = GaugeMetricFamily(
            _P + "relay_connected", "1 when the relay is connected", labels=["relay"]
        )
        for relay in self._metrics.relays():
            relays.add_metric([relay["url"]], 1.0 if relay["connected"] else 0.0)
        yield relays
        refusals = CounterMetricFamily(
            _P + "policy_refusals", "[policy] refusals and ignores by rule", labels=["rule"]
        )
        policy = getattr(runner, "policy", None)
        for rule, count in sorted(getattr(policy, "refusals", {}).items()):
            refusals.add_metric([rule], count)
        yield refusals
        resolver = getattr(runner, "input_resolver", None)
        yield GaugeMetricFamily(
            _P + "chained_inputs_waiting", "Chained jobs waiting for their input",
            getattr(resolver, "waiting", 0),
        )  # fmt: skip
        yield from _engine_families(runner)


def _engine_families(runner: Any) -> Iterator[Any]:
    engines = getattr(runner, "engines", ())
    caches: list[Any] = [getattr(engine, "cache", None) for engine in engines]
    caches = [cache for cache in caches if hasattr(cache, "loaded")]
    yield GaugeMetricFamily(
        _P + "pipelines_loaded", "Models in the pipeline cache",
        sum(len(cache.loaded()) for cache in caches),
    )  # fmt: skip
    yield GaugeMetricFamily(
        _P + "pipeline_cache_bytes", "Estimated bytes of the cached pipelines",
        sum(cache.loaded_bytes() for cache in caches),
    )  # fmt: skip
    slots = getattr(runner, "slots", ())
    held = GaugeMetricFamily(
        _P + "slot_model_loaded", "Models each engine slot holds", labels=["slot", "model"]
    )
    available = GaugeMetricFamily(
        _P + "slot_available", "Engine slots taking jobs", labels=["slot"]
    )
    for slot in slots:
        for model in sorted(slot.loaded_models()):
            held.add_metric([slot.name, model], 1)
        available.add_metric([slot.name], 1 if slot.available else 0)
    yield held
    yield available
    gpu = GaugeMetricFamily(
        _P + "gpu_memory_allocated_bytes", "torch.cuda.memory_allocated", labels=["device"]
    )
    torch = sys.modules.get("torch")  # never imported here: only read when the engine has it
    if torch is not None and torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            gpu.add_metric([f"cuda:{index}"], float(torch.cuda.memory_allocated(index)))
    yield gpu
