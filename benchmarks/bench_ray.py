"""The Ray backend: what the Ray path adds to a job, and what a second worker buys.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_ray.py [--runs 21] [--jobs 16]
        [--steps 2] [--throughput-steps 40] [--size 64]

Starts a local Ray cluster on 127.0.0.1 (2 CPUs, its token in a temporary file, usage
statistics off), tiny SD 1.5 model (``nostr_imagegen.testing.build_tiny_pipeline``), torch
on one thread in every process. All figures come from one run; cases interleaved (ABBA).

(1) Per-job overhead. One warm job, ``--size`` pixels, ``--steps`` steps: in this process
    (``Engine.generate`` + ``EncodeSettings.encode``, the local engine's path) against the Ray path
    (``RaySlot.run``: the job pickled to the worker actor, generated and encoded there,
    progress streamed back, the PNG bytes returned). Target: median difference < 50 ms.
(2) Throughput. ``--jobs`` jobs (``--throughput-steps`` steps each) handed to 1 worker, then
    to 2 (each free worker takes the next job, as the front's scheduler does), both warm.
    Reported: jobs/s each and the ratio (at most 2 on this 2-core machine).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="timed jobs per case in (1)")
    parser.add_argument("--jobs", type=int, default=16, help="jobs per case in (2)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--throughput-steps", type=int, default=40)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-ray-", dir="/tmp") as tmp:
        # Ray reads these when it is imported: set before anything imports it.
        token = Path(tmp) / "token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        os.environ.update(
            {
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(token),
                "OMP_NUM_THREADS": "1",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
                ),
            }
        )
        asyncio.run(_bench(args, Path(tmp)))
    return 0


async def _bench(args: argparse.Namespace, tmp: Path) -> None:
    import torch

    from nostr_imagegen.engine.generate import Engine
    from nostr_imagegen.engine.quiet import quiet_libraries
    from nostr_imagegen.engine_config import EngineConfig
    from nostr_imagegen.service.ray import start_ray_workers
    from nostr_imagegen.service.ray.cluster import disconnect, start_or_connect
    from nostr_imagegen.service.scaling import RaySection
    from nostr_imagegen.service.slots import EncodeSettings
    from nostr_imagegen.testing import build_tiny_pipeline

    torch.set_num_threads(1)
    quiet_libraries()
    folder = build_tiny_pipeline(tmp / "model", seed=0)
    config = EngineConfig.from_mapping(
        {
            "models": {
                "tiny": {"source": str(folder), "family": "sd15", "steps": 2, "native_size": 64}
            },
            "device": "cpu",
        }
    )
    encode = EncodeSettings()
    engine = Engine(config)
    engine.warm("tiny")

    start_or_connect(RaySection(), temp_dir=str(tmp / "ray"), num_cpus=2)
    section = RaySection(workers=2, num_gpus=0, num_cpus=1, max_restarts=0)
    slots = start_ray_workers(config, section, encode, torch_threads=1)
    try:
        print(
            f"model: tiny SD 1.5 layout, {args.size}x{args.size}, torch threads 1 per process, "
            f"{os.cpu_count()} CPUs, Ray workers: 2 actors of 1 CPU each"
        )
        job = _job(args.size, args.steps, seed=7)

        def local() -> Any:
            generated = engine.generate(job)
            return encode.encode(job, generated)

        async def remote() -> Any:
            [outcome] = await slots[0].run([_task(job)])
            assert isinstance(outcome, list), outcome
            return outcome

        await remote()  # warm the worker: its first job loads the model
        local_same = local()[0].sha256
        remote_same = (await remote())[0].sha256
        local_s: list[float] = []
        remote_s: list[float] = []
        for run in range(args.runs):
            for case in ("local", "ray") if run % 2 == 0 else ("ray", "local"):
                started = time.perf_counter()
                if case == "local":
                    local()
                else:
                    await remote()
                (local_s if case == "local" else remote_s).append(time.perf_counter() - started)
        overhead_ms = (statistics.median(remote_s) - statistics.median(local_s)) * 1000
        print("\n(1) one warm job: Ray path vs in-process engine")
        print(f"    same image bytes: {local_same == remote_same}")
        print(f"    in-process: {_spread(local_s)}")
        print(f"    Ray path:   {_spread(remote_s)}")
        print(
            f"    overhead: {overhead_ms:.1f} ms per job (ratio "
            f"{statistics.median(remote_s) / statistics.median(local_s):.2f})  "
            f"target < 50 ms: {'met' if overhead_ms < 50 else 'MISSED'}"
        )

        await slots[1].run([_task(job)])  # both workers warm
        jobs = [_job(args.size, args.throughput_steps, seed=i) for i in range(args.jobs)]
        rates: dict[int, list[float]] = {1: [], 2: []}
        for workers in (1, 2, 2, 1):
            elapsed = await _drain(slots[:workers], jobs)
            rates[workers].append(len(jobs) / elapsed)
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        print(f"\n(2) throughput, {args.jobs} jobs of {args.throughput_steps} steps")
        print(f"    1 worker:  {one:.2f} jobs/s")
        print(f"    2 workers: {two:.2f} jobs/s")
        print(f"    ratio 2 vs 1: {two / one:.2f}x  (at most 2 on 2 cores)")
    finally:
        for slot in slots:
            await slot.close()
        disconnect()


async def _drain(slots: Sequence[Any], jobs: Sequence[Any]) -> float:
    """Every job run once, each free worker taking the next: seconds for all."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def work(slot: Any) -> None:
        while not queue.empty():
            [outcome] = await slot.run([_task(queue.get_nowait())])
            assert isinstance(outcome, list), outcome

    started = time.perf_counter()
    await asyncio.gather(*(work(slot) for slot in slots))
    return time.perf_counter() - started


def _job(size: int, steps: int, *, seed: int) -> Any:
    from nostr_imagegen.imagejob.request import parse_image_job
    from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
    from nostr_imagegen.nostr.keys import Keys

    tags = (
        ("i", "a lighthouse in a storm", "text"),
        ("param", "size", f"{size}x{size}"),
        ("param", "steps", str(steps)),
        ("param", "seed", str(seed)),
    )
    return parse_image_job(sign_event(UnsignedEvent(kind=5100, tags=tags), Keys.generate()))


def _task(job: Any) -> Any:
    from nostr_imagegen.service.jobqueue import ActiveJob
    from nostr_imagegen.service.slots import EngineTask

    return EngineTask(ActiveJob(job=job, relay=None, reply_relays=()))


def _spread(values: Sequence[float]) -> str:
    ms = [value * 1000 for value in values]
    return f"{statistics.median(ms):.1f} ms ({min(ms):.1f}-{max(ms):.1f})"


if __name__ == "__main__":
    sys.exit(main())
