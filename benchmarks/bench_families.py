"""Per model family: a warm job through ``Engine.generate`` vs. the bare pipeline call on
the same loaded pipeline, as a ratio measured in this run (target <= 1.03).

    .venv/bin/python benchmarks/bench_families.py [--reps 12] [--size 128] [--steps 4]

Each family's tiny model (``nostr_imagegen.testing.build_tiny_family``) is saved and loaded
by the engine's real loader; the bare call gets the same arguments the engine passes
(prompt, steps, guidance, size, seed generator), so the ratio is what the library adds:
planning, argument filtering, the step callback, the final resize check. Cases alternate
(library, bare, bare, library) so drift cancels; one torch thread.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from nostr_imagegen.engine import Engine, EngineConfig
from nostr_imagegen.imagejob.dimensions import ModelFamily
from nostr_imagegen.imagejob.request import parse_image_job
from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.testing import build_tiny_family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=12)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from nostr_imagegen.engine.families import family_spec

    customer = Keys.generate()
    print(
        f"family      library ms   bare ms   ratio   ({args.size}x{args.size}, {args.steps} steps)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for family in ModelFamily:
            folder = build_tiny_family(Path(tmp) / family.value, family)
            native = max(args.size, 2 * family.multiple)
            config = EngineConfig.from_mapping(
                {
                    "models": {
                        "m": {
                            "source": str(folder),
                            "family": family.value,
                            "steps": args.steps,
                            "guidance_scale": 3.0,
                            "native_size": native,
                        }
                    },
                    "device": "cpu",
                }
            )
            engine = Engine(config)
            tags = (("i", "a lighthouse at dusk", "text"), ("param", "seed", "7"))
            job = parse_image_job(sign_event(UnsignedEvent(kind=5100, tags=tags), customer))
            plan = engine.plan(job)
            pipeline = engine.cache.get("m").text2img
            spec = family_spec(family)
            kwargs: dict[str, Any] = {
                "prompt": job.prompt,
                "num_inference_steps": args.steps,
                spec.guidance_argument: 3.0,
                "width": plan.dimensions.width,
                "height": plan.dimensions.height,
            }
            if family is ModelFamily.SANA:
                kwargs["use_resolution_binning"] = False

            def library(engine: Engine = engine, job: Any = job) -> None:
                engine.generate(job)

            def bare(pipeline: Any = pipeline, kwargs: dict[str, Any] = kwargs) -> None:
                pipeline(generator=torch.Generator().manual_seed(7), **kwargs)

            library()
            bare()  # warm both paths
            times: dict[str, list[float]] = {"library": [], "bare": []}
            for rep in range(args.reps):
                order = (library, bare) if rep % 2 == 0 else (bare, library)
                for case in order:
                    start = time.perf_counter()
                    case()
                    times[case.__name__].append(time.perf_counter() - start)
            lib, raw = statistics.median(times["library"]), statistics.median(times["bare"])
            print(f"{family.value:10}  {lib * 1000:9.1f}  {raw * 1000:8.1f}  {lib / raw:6.3f}")
            engine.close()


if __name__ == "__main__":
    main()
