"""Engine overhead: what the library adds to a diffusers call, and what keeping models warm saves.

    .venv/bin/python benchmarks/bench_engine.py [--runs 9] [--steps 2] [--size 512]
        [--widths 16,32,64,64] [--threads 1] [--lora-size 128] [--lora-cycles 20] [--profile]

All figures come from one run of this script on one model (see ``_common.py``), timed with
``time.perf_counter``, cases interleaved (ABBA order) so machine load hits both alike.

(1) Library overhead. A warm job through the library: ``parse_event`` of the signed request
    JSON, ``parse_image_job``, ``Engine.generate``, ``encode_image`` (PNG), ``build_result``
    with the image link and ``sign_event``; against the bare ``pipe(...)`` call on the same
    loaded pipeline (same prompt, size, steps, guidance, seed) plus Pillow's PNG encoding.
    Both produce the same pixels (checked). Target: median ratio <= 1.03.
(2) Warm vs. cold. The warm library job against what a naive DVM does per job:
    ``AutoPipelineForText2Image.from_pretrained`` + the call + PNG. Reported as a speedup.
(3) LoRA switching. Jobs cycling LoRA l0 -> l1 -> none through the engine (every job changes
    the adapter set), against plain jobs that change nothing (none after none), at
    ``--lora-size`` pixels (the switch cost does not depend on the image size; a small image
    keeps the noise of the difference small). Overhead = median(switching job) - median(plain
    job), reported as a percentage of one pipeline reload (median ``from_pretrained`` time
    from (2)). Target: <= 5%. The first load of each LoRA is reported separately.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import io
import logging
import pstats
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_WIDTHS,
    PROMPT,
    bare_png,
    build_model,
    engine_config_data,
    median,
    parse_widths,
    request_json,
    set_threads,
    spread,
    timed,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="timed jobs per case in (1), (2)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--widths", type=parse_widths, default=DEFAULT_WIDTHS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lora-size", type=int, default=128)
    parser.add_argument("--lora-cycles", type=int, default=20, help="l0 -> l1 -> none cycles")
    parser.add_argument("--profile", action="store_true", help="profile one job of each kind")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    set_threads(args.threads)

    import diffusers
    import torch
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from nostr_imagegen.engine.config import EngineConfig
    from nostr_imagegen.engine.encode import encode_image
    from nostr_imagegen.engine.generate import Engine
    from nostr_imagegen.imagejob.imeta import ImageLink
    from nostr_imagegen.imagejob.request import parse_image_job
    from nostr_imagegen.imagejob.results import build_result
    from nostr_imagegen.nostr.event import parse_event, sign_event
    from nostr_imagegen.nostr.keys import Keys

    for library_logging in (diffusers_logging, transformers_logging):
        library_logging.disable_progress_bar()
        library_logging.set_verbosity_error()

    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        folder, loras = build_model(Path(tmp), args.widths, loras=2)
        config = EngineConfig.from_mapping(
            engine_config_data(folder, steps=args.steps, guidance=args.guidance, loras=loras)
        )
        engine = Engine(config)
        provider, customer = Keys.generate(), Keys.generate()
        seed = 1234

        def library_job(text: str) -> Any:
            job = parse_image_job(parse_event(text), provider=provider)
            result = engine.generate(job)
            encoded = encode_image(result.images[0], job.output)
            link = ImageLink(
                url=f"https://blossom.example/{encoded.filename}",
                mime=encoded.mime,
                sha256=encoded.sha256,
                width=encoded.width,
                height=encoded.height,
                size_bytes=len(encoded.data),
            )
            return sign_event(build_result(job, [link], keys=provider), provider), result

        def bare_call(pipe: Any, size: int) -> Any:
            image = pipe(
                PROMPT,
                height=size,
                width=size,
                num_inference_steps=args.steps,
                guidance_scale=args.guidance,
                generator=torch.Generator("cpu").manual_seed(seed),
            ).images[0]
            return bare_png(image), image

        def load() -> Any:
            auto: Any = diffusers.AutoPipelineForText2Image
            pipe = auto.from_pretrained(folder, dtype=torch.float32)
            pipe.set_progress_bar_config(disable=True)
            return pipe

        print(
            f"model: SD 1.5 layout, UNet widths {args.widths}, {args.steps} steps, "
            f"guidance {args.guidance}, {args.size}x{args.size}, torch threads {args.threads}"
        )
        text = request_json(customer, size=args.size, steps=args.steps, seed=seed)

        # ---- (1) library overhead on a warm pipeline ------------------------------------
        engine.warm("bench")
        pipe = engine.cache.get("bench").text2img
        (_, warm_result), (_, warm_bare) = library_job(text), bare_call(pipe, args.size)
        same = warm_result.images[0].tobytes() == warm_bare.tobytes()
        lib_times: list[float] = []
        bare_times: list[float] = []
        for run in range(args.runs):
            order = ("lib", "bare") if run % 2 == 0 else ("bare", "lib")
            for case in order:
                if case == "lib":
                    lib_times.append(timed(lambda: library_job(text))[0])
                else:
                    bare_times.append(timed(lambda: bare_call(pipe, args.size))[0])
        pair_ratios = sorted(a / b for a, b in zip(lib_times, bare_times, strict=True))
        ratio = median(lib_times) / median(bare_times)
        print("\n(1) warm library job vs bare pipe() + PNG")
        print(f"    same pixels: {same}")
        print(f"    library job: {spread(lib_times)}")
        print(f"    bare call:   {spread(bare_times)}")
        print(
            f"    ratio of medians: {ratio:.4f}  target <= 1.03: "
            f"{'met' if ratio <= 1.03 else 'MISSED'}"
        )
        print(
            f"    (median of paired ratios {median(pair_ratios):.4f}, "
            f"ratio of minimums {min(lib_times) / min(bare_times):.4f})"
        )

        # ---- (2) warm vs reloading per job ----------------------------------------------
        cold_times: list[float] = []
        reload_times: list[float] = []
        warm_times: list[float] = []
        runs2 = max(3, args.runs // 2)
        for run in range(runs2):
            order = ("warm", "cold") if run % 2 == 0 else ("cold", "warm")
            for case in order:
                if case == "warm":
                    warm_times.append(timed(lambda: library_job(text))[0])
                else:
                    load_time, fresh = timed(load)
                    call_time, _ = timed(functools.partial(bare_call, fresh, args.size))
                    reload_times.append(load_time)
                    cold_times.append(load_time + call_time)
                    del fresh
                    gc.collect()
        reload_s = median(reload_times)
        print("\n(2) warm library job vs from_pretrained + call per job")
        print(f"    warm job:          {spread(warm_times)}")
        print(f"    load + call:       {spread(cold_times)}")
        print(f"    of which load:     {spread(reload_times)}")
        print(f"    speedup: {median(cold_times) / median(warm_times):.3f}x")

        # ---- (3) LoRA switching ---------------------------------------------------------
        size3 = args.lora_size
        texts = {
            name: request_json(customer, size=size3, steps=args.steps, seed=seed, lora=name)
            for name in ("l0", "l1")
        }
        texts["none"] = request_json(customer, size=size3, steps=args.steps, seed=seed)
        first_loads = {}
        for name in ("l0", "l1"):
            # A first job with each LoRA loads it from disk (once per pipeline).
            first_loads[name] = timed(functools.partial(library_job, texts[name]))[0]
        library_job(texts["none"])
        plain_first = timed(lambda: library_job(texts["none"]))[0]
        switch_times: list[float] = []
        plain_times: list[float] = []
        cycle_overheads: list[float] = []
        for _ in range(args.lora_cycles):
            switches = [
                timed(functools.partial(library_job, texts[name]))[0]
                for name in ("l0", "l1", "none")  # each of these changes the adapter set
            ]
            plains = [timed(functools.partial(library_job, texts["none"]))[0] for _ in range(2)]
            switch_times += switches
            plain_times += plains
            # Neighbours in time share the machine's load: their difference is steadier.
            cycle_overheads.append(sum(switches) / 3 - sum(plains) / 2)
        # Where a switch goes: the pipeline-level adapter calls the engine makes per LoRA
        # job (each walks every module of the UNet and text encoder).
        toggles: list[float] = []
        for _ in range(3 * args.lora_cycles):
            toggles.append(
                timed(
                    lambda: (
                        pipe.enable_lora(),
                        pipe.set_adapters(["l0"], adapter_weights=[0.8]),
                        pipe.disable_lora(),
                    )
                )[0]
            )
        overhead = median(switch_times) - median(plain_times)
        paired = median(cycle_overheads)
        share = 100 * overhead / reload_s
        first_lora = median(list(first_loads.values())) - plain_first
        print(f"\n(3) LoRA switching (l0 -> l1 -> none, {size3}x{size3})")
        print(f"    job that switches: {spread(switch_times)}")
        print(f"    plain job:         {spread(plain_times)}")
        print(f"    switch overhead:   {overhead * 1000:.1f} ms = {share:.1f}% of one reload")
        print(
            f"    per-cycle difference (median of {len(cycle_overheads)} cycles): "
            f"{paired * 1000:.1f} ms = {100 * paired / reload_s:.1f}% of one reload"
        )
        print(f"    target <= 5%: {'met' if share <= 5 else 'MISSED'}")
        print(
            f"    enable_lora + set_adapters + disable_lora alone: {median(toggles) * 1000:.1f} ms"
            " per LoRA job"
        )
        print(
            f"    first use of a LoRA (load from disk): +{first_lora * 1000:.0f} ms = "
            f"{100 * first_lora / reload_s:.0f}% of one reload (once per pipeline)"
        )

        if args.profile:
            _profile("library job", lambda: library_job(text))
            _profile("bare call", lambda: bare_call(pipe, args.size))
            _profile("LoRA switching job", lambda: library_job(texts["l0"]))
        engine.close()
    return 0


def _profile(title: str, function: Any) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(function)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
    print(f"\n---- profile: {title} ----")
    print(out.getvalue())


if __name__ == "__main__":
    raise SystemExit(main())
