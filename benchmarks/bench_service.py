"""The DVM as a customer sees it, against a real local relay: service latency and a burst.

    python benchmarks/bench_service.py [--jobs 30] [--burst 200] [--size 64] [--steps 1]
        [--threads 1] [--json out.json]

Everything runs on 127.0.0.1 in one go: a ``nostr-relay`` process
(``nostr_imagegen.service.localrelay``), the DVM (``JobRunner`` with the SQLite ledger, the
tiny random-weight model from ``nostr_imagegen.testing`` and a local-folder image host
served over HTTP), and a customer (``service.client.JobClient``) with its own relay
connection. The DVM and the customer share this process and its event loop.

(1) **Latency.** ``--jobs`` requests one after the other. For each: the time from the
customer starting to publish the request to the customer holding the verified result, and
the time the engine spent inside ``Engine.generate`` for that job (measured in the DVM).
Service latency = the first minus the second: relay hops both ways, ledger writes, parsing,
queueing, PNG encoding, upload (a file write with fsync), signing. Reported: median and p95.
**Target: median service latency under 50 ms.**

(2) **Burst.** ``--burst`` requests published at once (the queue sized to hold them all).
Reported: answers received (results and `error` feedback), jobs lost (no answer before the
deadline), the ledger's final states, the wall time, and the peak RSS of this process
(``ru_maxrss``) and of the relay process (sampled). **Target: every request answered, none
lost.**

Timings depend on the machine and its load; the relay is a Python server, usually the
slowest hop. Compare runs on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.client import JobClient, JobOutcome, build_request
from nostr_imagegen.service.ledger import JobState, Ledger
from nostr_imagegen.service.localrelay import LocalRelay
from nostr_imagegen.service.relay import RelayPool
from nostr_imagegen.service.runner import JobRunner, RunnerOptions
from nostr_imagegen.service.upload import LocalFolderHost, serve_folder

LATENCY_TARGET_MS = 50.0


class TimedEngine:
    """Delegates to the real engine and records how long each job spent in ``generate``."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def generate(self, job: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.engine.generate(job, **kwargs)
        finally:
            with self._lock:
                self.seconds[job.id] = time.perf_counter() - started

    def plan(self, job: Any) -> Any:
        return self.engine.plan(job)

    def offered(self) -> Any:
        return self.engine.offered()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _build_engine(root: Path, steps: int, size: int, threads: int) -> Any:
    import torch

    from nostr_imagegen.engine.generate import Engine
    from nostr_imagegen.engine_config import EngineConfig
    from nostr_imagegen.testing import build_tiny_pipeline

    torch.set_num_threads(threads)
    folder = build_tiny_pipeline(root / "tiny", seed=0)
    config = EngineConfig.from_mapping(
        {
            "models": {
                "tiny": {
                    "source": str(folder),
                    "family": "sd15",
                    "steps": steps,
                    "guidance_scale": 5.0,
                    "native_size": max(64, size),
                }
            },
            "device": "cpu",
        }
    )
    engine = Engine(config)
    engine.warm()
    return engine


def _relay_rss_mib(pid: int | None) -> float | None:
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        return None
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            total += child.memory_info().rss
    except psutil.Error:
        return None
    return float(total) / 2**20


async def _run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    relay = LocalRelay(root / "relay")
    await asyncio.to_thread(relay.start)
    try:
        engine = TimedEngine(await asyncio.to_thread(
            _build_engine, root, args.steps, args.size, args.threads
        ))  # fmt: skip
        images = root / "images"
        images.mkdir()
        dvm_keys, customer_keys = Keys.generate(), Keys.generate()
        with serve_folder(images) as server, Ledger(root / "ledger.sqlite3") as ledger:
            async with RelayPool([relay.url], keys=dvm_keys) as dvm_pool:
                runner = JobRunner(
                    keys=dvm_keys,
                    pool=dvm_pool,
                    engine=engine,
                    hosts=[LocalFolderHost(images, server.url)],
                    ledger=ledger,
                    queue_size=max(8, args.burst + 8),
                    options=RunnerOptions(progress_interval_s=60.0),
                )
                await runner.start()
                try:
                    async with RelayPool([relay.url], keys=customer_keys) as customer_pool:
                        await dvm_pool.wait_connected(timeout_s=10)
                        await customer_pool.wait_connected(timeout_s=10)
                        async with JobClient(customer_pool, customer_keys) as client:
                            latency = await _latency(args, client, customer_keys, engine)
                            burst = await _burst(args, client, customer_keys, relay)
                finally:
                    await runner.stop()
                burst["runner_stats"] = str(runner.stats)
                # Read after the runner stopped: the last acknowledgements are recorded then.
                burst["ledger_states"] = _states(ledger, burst.pop("request_ids"))
    finally:
        await asyncio.to_thread(relay.stop)
    return {"latency": latency, "burst": burst}


def _states(ledger: Ledger, request_ids: list[str]) -> dict[str, int]:
    states: dict[str, int] = {}
    for request_id in request_ids:
        state = ledger.state(request_id)
        key = state.value if state is not None else "never seen"
        states[key] = states.get(key, 0) + 1
    return states


def _params(size: int) -> tuple[tuple[str, str], ...]:
    return (("size", f"{size}x{size}"),)


async def _latency(
    args: argparse.Namespace, client: JobClient, keys: Keys, engine: TimedEngine
) -> dict[str, Any]:
    # Warm-up: the first job pays for lazy imports and connection set-up.
    warm = build_request(keys, prompt="warm-up", params=_params(args.size))
    await client.submit(warm, timeout_s=60)
    totals: list[float] = []
    services: list[float] = []
    engines: list[float] = []
    for index in range(args.jobs):
        request = build_request(
            keys, prompt=f"a purple ostrich #{index}", params=_params(args.size)
        )
        outcome = await client.submit(request, timeout_s=60)
        if outcome.result is None:
            raise SystemExit(f"latency job {index} failed: {outcome.error}")
        spent = engine.seconds[request.id]
        totals.append(outcome.elapsed_s * 1000)
        engines.append(spent * 1000)
        services.append((outcome.elapsed_s - spent) * 1000)
    return {
        "jobs": args.jobs,
        "total_ms": {"median": statistics.median(totals), "p95": _percentile(totals, 0.95)},
        "engine_ms": {"median": statistics.median(engines), "p95": _percentile(engines, 0.95)},
        "service_ms": {
            "median": statistics.median(services),
            "p95": _percentile(services, 0.95),
            "min": min(services),
            "max": max(services),
        },
    }


async def _burst(
    args: argparse.Namespace, client: JobClient, keys: Keys, relay: LocalRelay
) -> dict[str, Any]:
    requests = [
        build_request(keys, prompt=f"burst #{index}", params=_params(args.size))
        for index in range(args.burst)
    ]
    relay_peak: list[float] = []
    sampling = True

    async def sample() -> None:
        while sampling:
            rss = _relay_rss_mib(relay.pid)
            if rss is not None:
                relay_peak.append(rss)
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    outcomes: list[JobOutcome | BaseException] = await asyncio.gather(
        *(client.submit(request, timeout_s=args.burst_timeout) for request in requests),
        return_exceptions=True,
    )
    wall = time.monotonic() - started
    sampling = False
    await sampler
    results = sum(1 for o in outcomes if isinstance(o, JobOutcome) and o.result is not None)
    errors = sum(
        1 for o in outcomes if isinstance(o, JobOutcome) and o.result is None and not o.timed_out
    )
    lost = sum(1 for o in outcomes if not isinstance(o, JobOutcome) or o.timed_out)
    return {
        "requests": args.burst,
        "results": results,
        "errors": errors,
        "lost": lost,
        "request_ids": [request.id for request in requests],
        "wall_s": wall,
        "jobs_per_s": args.burst / wall if wall > 0 else None,
        "peak_rss_mib_this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_mib_relay": max(relay_peak) if relay_peak else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30, help="sequential jobs for latency")
    parser.add_argument("--burst", type=int, default=200, help="requests published at once")
    parser.add_argument("--burst-timeout", type=float, default=300.0)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-service-") as folder:
        report = asyncio.run(_run(args, Path(folder)))

    latency, burst = report["latency"], report["burst"]
    service, total, engine = latency["service_ms"], latency["total_ms"], latency["engine_ms"]
    print(f"(1) latency over {latency['jobs']} sequential jobs ({args.size}px, {args.steps} step)")
    print(
        f"    customer-seen total   median {total['median']:7.1f} ms   p95 {total['p95']:7.1f} ms"
    )
    print(
        f"    engine (generate)     median {engine['median']:7.1f} ms   p95 {engine['p95']:7.1f} ms"
    )
    print(
        f"    service = total - engine  median {service['median']:7.1f} ms   "
        f"p95 {service['p95']:7.1f} ms   (min {service['min']:.1f}, max {service['max']:.1f})"
    )
    met = service["median"] < LATENCY_TARGET_MS
    print(f"    target median < {LATENCY_TARGET_MS:.0f} ms: {'met' if met else 'MISSED'}")
    print(f"(2) burst of {burst['requests']} requests")
    print(
        f"    answered {burst['results'] + burst['errors']} "
        f"({burst['results']} results, {burst['errors']} errors), lost {burst['lost']}"
    )
    print(f"    ledger states after shutdown: {burst['ledger_states']}")
    print(f"    wall {burst['wall_s']:.1f} s ({burst['jobs_per_s']:.1f} jobs/s)")
    relay_rss = burst["peak_rss_mib_relay"]
    print(
        f"    peak RSS: this process (DVM + customer) {burst['peak_rss_mib_this_process']:.0f} MiB"
        + (f", relay {relay_rss:.0f} MiB" if relay_rss is not None else "")
    )
    none_lost = (
        burst["lost"] == 0
        and burst["results"] + burst["errors"] == burst["requests"]
        and burst["ledger_states"].get(JobState.PUBLISHED.value, 0) == burst["results"]
    )
    print(f"    target every request answered, none lost: {'met' if none_lost else 'MISSED'}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if met and none_lost else 1


if __name__ == "__main__":
    sys.exit(main())
