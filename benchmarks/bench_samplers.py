"""A sampler switch per job vs. reloading the pipeline with that scheduler.

    .venv/bin/python benchmarks/bench_samplers.py [--runs 15] [--widths 16,32,64,64] [--threads 1]

What changes a job's sampler costs, measured on the benchmark model (``_common.py``), timed
with ``time.perf_counter``, the cases interleaved (ABBA) so machine load hits both alike:

- switch: ``sampler_applied(pipeline, name)`` entered and left on the warm pipeline, as
  ``Engine`` does around each job: a new scheduler from the model's config, set, and the
  original put back. Alternating ``dpmpp_2m_karras`` and ``euler_a``.
- reload: what a DVM without the swap does to change a model's scheduler:
  ``AutoPipelineForText2Image.from_pretrained`` + ``Scheduler.from_config`` set on it.
- job: one warm 2-step 512x512 job through the engine with a sampler, for scale.

Reported: the medians, and switch / reload and switch / job as ratios of one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_WIDTHS,
    build_model,
    engine_config_data,
    median,
    parse_widths,
    set_threads,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--widths", type=parse_widths, default=DEFAULT_WIDTHS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)

    import diffusers

    from nostr_imagegen.engine import Engine, EngineConfig
    from nostr_imagegen.engine.quiet import quiet_libraries
    from nostr_imagegen.engine.samplers import sampler_applied

    quiet_libraries()

    with tempfile.TemporaryDirectory() as tmp:
        folder, _ = build_model(Path(tmp), args.widths)
        config = EngineConfig.from_mapping(engine_config_data(folder, steps=2, guidance=7.5))
        engine = Engine(config)
        pipeline: Any = engine.cache.get("bench").text2img
        names = ("dpmpp_2m_karras", "euler_a")

        def switch(name: str) -> float:
            started = time.perf_counter()
            with sampler_applied(pipeline, name, model="bench"):
                pass
            return time.perf_counter() - started

        def reload(name: str) -> float:
            started = time.perf_counter()
            fresh = diffusers.AutoPipelineForText2Image.from_pretrained(folder)
            target = (
                "DPMSolverMultistepScheduler"
                if name == names[0]
                else ("EulerAncestralDiscreteScheduler")
            )
            fresh.scheduler = getattr(diffusers, target).from_config(fresh.scheduler.config)
            return time.perf_counter() - started

        switches: list[float] = []
        reloads: list[float] = []
        for run in range(args.runs):
            order = (switch, reload) if run % 2 == 0 else (reload, switch)
            for case in order:
                (switches if case is switch else reloads).append(case(names[run % 2]))
        original = pipeline.scheduler
        assert pipeline.scheduler is original

        from nostr_imagegen.imagejob.request import parse_image_job
        from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
        from nostr_imagegen.nostr.keys import Keys

        customer = Keys.generate()
        tags = (
            ("i", "a lighthouse", "text"),
            ("param", "sampler", "euler_a"),
            ("param", "seed", "1"),
        )
        job = parse_image_job(sign_event(UnsignedEvent(kind=5100, tags=tags), customer))
        engine.generate(job)  # warm
        jobs = []
        for _ in range(max(3, args.runs // 3)):
            started = time.perf_counter()
            engine.generate(job)
            jobs.append(time.perf_counter() - started)

    switch_s, reload_s, job_s = median(switches), median(reloads), median(jobs)
    print(f"sampler switch (swap + restore), median of {len(switches)}: {switch_s * 1e3:.3f} ms")
    print(f"pipeline reload with that scheduler, median of {len(reloads)}: {reload_s * 1e3:.1f} ms")
    print(f"warm 512x512 2-step job with a sampler, median of {len(jobs)}: {job_s * 1e3:.1f} ms")
    print(f"switch / reload: {switch_s / reload_s:.5f}  (reload is {reload_s / switch_s:,.0f}x)")
    print(f"switch / job:    {switch_s / job_s:.5f}")


if __name__ == "__main__":
    main()
