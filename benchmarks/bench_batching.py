"""Batching: N compatible jobs in batches of B on one engine vs. the same N one at a time.

    .venv/bin/python benchmarks/bench_batching.py [--jobs 8] [--batch 4] [--rounds 5]
        [--size 128] [--steps 4] [--widths 16,32,64,64] [--threads 1]

One engine, one model (``_common.py``: the SD 1.5 layout with reduced widths, random weights,
loaded by the real loaders), ``max_batch = --batch``. N text-to-image jobs that share a batch
key (same model, size, steps, guidance; each its own seed) are served two ways, each round in
ABBA order after a warm-up of both: ``Engine.generate`` for each job in turn, and
``Engine.generate_batch`` over groups of B. Reported: images per second of each (median round)
and their ratio, and the largest pixel difference between a job's batched and solo image
(batch shapes change results by about 1e-5: a level or two of 255 at most).

What it measures: the per-call costs a batch shares (text encoder and UNet launches, the
scheduler's and the pipeline's Python work, LoRA switching, the engine's own bookkeeping) and
the better use of the CPU kernels by larger tensors. At 128x128 and 4 steps on this model a
job's call is mostly such overhead, as a small, fast model (SD-Turbo-like steps) is on a GPU;
at 512x512 on a CPU the convolutions dominate and the gain shrinks (try ``--size 512``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_WIDTHS,
    build_model,
    engine_config_data,
    median,
    parse_widths,
    request_json,
    set_threads,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8, help="compatible jobs per round (N)")
    parser.add_argument("--batch", type=int, default=4, help="jobs per pipeline call (B)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each way")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--widths", type=parse_widths, default=DEFAULT_WIDTHS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    set_threads(args.threads)

    import numpy as np

    from nostr_imagegen.engine import BatchRequest, Engine, EngineConfig, GenerationResult
    from nostr_imagegen.engine.quiet import quiet_libraries
    from nostr_imagegen.imagejob.request import parse_image_job
    from nostr_imagegen.nostr.event import parse_event
    from nostr_imagegen.nostr.keys import Keys

    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        folder, _ = build_model(Path(tmp), args.widths)
        data = engine_config_data(folder, steps=args.steps, guidance=args.guidance)
        data["models"]["bench"]["max_batch"] = args.batch
        engine = Engine(EngineConfig.from_mapping(data))
        customer = Keys.generate()
        jobs = [
            parse_image_job(
                parse_event(request_json(customer, size=args.size, steps=args.steps, seed=seed))
            )
            for seed in range(100, 100 + args.jobs)
        ]
        groups = [jobs[start : start + args.batch] for start in range(0, len(jobs), args.batch)]

        def one_at_a_time() -> list[Any]:
            return [engine.generate(job).images[0] for job in jobs]

        def batched() -> list[Any]:
            images = []
            for group in groups:
                for outcome in engine.generate_batch([BatchRequest(job) for job in group]):
                    if not isinstance(outcome, GenerationResult):
                        raise outcome
                    images.append(outcome.images[0])
            return images

        solo_images, batch_images = one_at_a_time(), batched()  # warm-up, and the check
        largest = max(
            int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())
            for a, b in zip(solo_images, batch_images, strict=True)
        )
        times: dict[str, list[float]] = {"solo": [], "batched": []}
        ways: dict[str, Callable[[], list[Any]]] = {"solo": one_at_a_time, "batched": batched}
        for round_index in range(args.rounds):
            order: Sequence[str] = (
                ("solo", "batched") if round_index % 2 == 0 else ("batched", "solo")
            )
            for name in order:
                started = time.perf_counter()
                ways[name]()
                times[name].append(time.perf_counter() - started)

    solo_rate = args.jobs / median(times["solo"])
    batch_rate = args.jobs / median(times["batched"])
    print(
        f"batching: {args.jobs} jobs {args.size}x{args.size}, {args.steps} steps, "
        f"{args.threads} thread(s), {args.rounds} rounds (median), UNet widths {args.widths}"
    )
    print(f"  one at a time:        {solo_rate:7.2f} images/s")
    print(f"  {f'in batches of {args.batch}:':22}{batch_rate:7.2f} images/s")
    print(f"  ratio batched / solo: {batch_rate / solo_rate:7.2f}x")
    print(f"  largest pixel difference batched vs. solo: {largest} (of 255)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
