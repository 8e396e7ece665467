"""Scheduling: pipeline loads and total time for a mixed-model trace, FIFO vs model-aware.

    .venv/bin/python benchmarks/bench_scheduling.py [--jobs 24] [--models 3] [--engines 2]
        [--rounds 2] [--size 64] [--steps 2] [--threads 1] [--seed 7]

A fixed trace of ``--jobs`` text-to-image jobs over ``--models`` tiny SD 1.5 models (their
order drawn once from ``--seed``, the same trace for both sides) arrives at once, as a burst
a busy DVM holds in its queue. It runs through the real ``Scheduler`` and ``LocalSlot``s,
each slot with its own real ``Engine`` keeping one pipeline loaded (``[cache] max_models =
1``, as a GPU holding one SDXL does), fresh engines for every run:

- FIFO (``model_aware = false``): each free engine takes the oldest job;
- model-aware (the default rules of ``service.scheduler``).

Loads are each engine's own count (``Engine.loads``: cache misses); total time is the
wall time from the burst to the last job's encoded image. Runs alternate (ABBA over
``--rounds``). Target: model-aware loads <= 1/3 of FIFO's. With these small models a load
costs about as much as a job; a real checkpoint loads in seconds to tens of seconds, so the
time ratio here understates what fewer loads save.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median, set_threads

from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys


@dataclass
class Run:
    loads: int
    seconds: float


def trace(jobs: int, models: int, seed: int) -> list[str]:
    """The model of each job, in arrival order: every model, in a fixed random mix."""
    rng = random.Random(seed)
    names = [f"m{index}" for index in range(models)]
    return [rng.choice(names) for _ in range(jobs)]


def build_models(root: Path, models: int) -> dict[str, Any]:
    from nostr_imagegen.testing import build_tiny_pipeline

    return {
        f"m{index}": {
            "source": str(build_tiny_pipeline(root / f"m{index}", seed=index)),
            "family": "sd15",
            "steps": 2,
            "native_size": 64,
        }
        for index in range(models)
    }


async def run_trace(
    config_data: dict[str, Any], models: list[str], *, engines: int, model_aware: bool, args: Any
) -> Run:
    from nostr_imagegen.engine.generate import Engine
    from nostr_imagegen.engine_config import EngineConfig
    from nostr_imagegen.imagejob.request import parse_image_job
    from nostr_imagegen.service.jobqueue import ActiveJob
    from nostr_imagegen.service.localslot import LocalSlot
    from nostr_imagegen.service.scaling import SchedulerSettings
    from nostr_imagegen.service.scheduler import Scheduler
    from nostr_imagegen.service.slots import EncodeSettings, EngineTask

    config = EngineConfig.from_mapping(config_data)
    built = [Engine(config) for _ in range(engines)]
    slots = [
        LocalSlot(engine, name=f"engine-{i}", encode=EncodeSettings())
        for i, engine in enumerate(built)
    ]
    settings = SchedulerSettings(model_aware=model_aware, batch_wait_ms=0)
    scheduler = Scheduler(slots, settings, capacity=len(models))
    customer = Keys.generate()
    jobs = []
    for index, model in enumerate(models):
        tags = (
            ("i", f"job {index}", "text"),
            ("param", "model", model),
            ("param", "size", f"{args.size}x{args.size}"),
            ("param", "steps", str(args.steps)),
            ("param", "seed", str(index)),
        )
        job = parse_image_job(sign_event(UnsignedEvent(kind=5100, tags=tags), customer))
        plan = slots[0].engine.plan(job)
        jobs.append(ActiveJob(job=job, relay=None, reply_relays=(), plan=plan))

    left = len(jobs)
    finished = asyncio.Event()

    async def work(index: int) -> None:
        nonlocal left
        while True:
            batch = await scheduler.take(index)
            outcomes = await slots[index].run([EngineTask(active) for active in batch])
            assert all(isinstance(o, list) for o in outcomes), outcomes
            left -= len(batch)
            if left == 0:
                finished.set()

    started = time.perf_counter()
    for active in jobs:
        scheduler.put(active)
    workers = [asyncio.create_task(work(i)) for i in range(engines)]
    await finished.wait()
    seconds = time.perf_counter() - started
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    for slot in slots:
        await slot.close()
    return Run(loads=sum(engine.loads for engine in built), seconds=seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds (2 runs per side)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    set_threads(args.threads)
    models = trace(args.jobs, args.models, args.seed)
    print(f"trace: {args.jobs} jobs over {args.models} models, {args.engines} engine(s),")
    print(f"  [cache] max_models = 1: {' '.join(models)}")
    with tempfile.TemporaryDirectory() as tmp:
        config_data = {
            "models": build_models(Path(tmp), args.models),
            "cache": {"max_models": 1},
            "device": "cpu",
        }
        runs: dict[bool, list[Run]] = {False: [], True: []}
        for round_index in range(args.rounds):
            order = (False, True) if round_index % 2 == 0 else (True, False)
            for model_aware in order:
                run = asyncio.run(
                    run_trace(
                        config_data, models, engines=args.engines, model_aware=model_aware,
                        args=args,
                    )
                )  # fmt: skip
                runs[model_aware].append(run)
    fifo, aware = runs[False], runs[True]
    fifo_loads = median([run.loads for run in fifo])
    aware_loads = median([run.loads for run in aware])
    fifo_time = median([run.seconds for run in fifo])
    aware_time = median([run.seconds for run in aware])
    print(f"FIFO:        loads {[r.loads for r in fifo]}, total {fifo_time:.2f} s (median)")
    print(f"model-aware: loads {[r.loads for r in aware]}, total {aware_time:.2f} s (median)")
    ratio = aware_loads / fifo_loads
    verdict = "meets" if ratio <= 1 / 3 else "MISSES"
    print(f"loads, model-aware / FIFO: {ratio:.2f} ({verdict} the target <= 0.33)")
    print(f"total time, model-aware / FIFO: {aware_time / fifo_time:.2f}")
    return 0 if ratio <= 1 / 3 else 1


if __name__ == "__main__":
    sys.exit(main())
