"""Engine overhead: what the library adds to a diffusers call, and what keeping models warm saves.

    .venv/bin/python benchmarks/bench_engine.py [--runs 9] [--steps 2] [--size 512]
        [--widths 16,32,64,64] [--threads 1] [--lora-size 128] [--lora-cycles 20] [--profile]

All figures come from one run of this script on one model (see ``_common.py``), timed with
``time.perf_counter``, cases interleaved (ABBA order) so machine load hits both alike.

(1) Library overhead. A warm job through the library: ``parse_event`` of the signed request
    JSON, ``parse_image_job``, ``Engine.generate``, ``encode_result`` (PNG), ``build_result``
    with the image link and ``sign_event``; against the bare ``pipe(...)`` call on the same
    loaded pipeline (same prompt, size, steps, guidance, seed) plus Pillow's PNG encoding.
    Both produce the same pixels (checked). Target: median ratio <= 1.03.
(2) Warm vs. cold. The warm library job against what a naive DVM does per job:
    ``AutoPipelineForText2Image.from_pretrained`` + the call + PNG. Reported as a speedup.
(3) LoRA switching, at ``--lora-size`` pixels (the switch cost does not depend on the image
    size; a small image keeps the noise of the differences small). Per cycle (``--lora-cycles``),
    interleaved ABBA: two engine jobs, l0 then l1 or l1 then l0, so every LoRA job changes the
    adapter set; two plain engine jobs; the same two LoRA calls bare on the same pipeline with
    that LoRA already on (switched outside the timing: no switch); and one reload as a naive
    DVM does it for a LoRA job, ``from_pretrained`` + ``load_lora_weights`` + ``set_adapters``.
    Reported, each as % of that reload and of ``from_pretrained`` alone:
    - the switch: time spent in ``LoadedModel.activate_loras`` (on, then off) inside the
      LoRA jobs, median per job. Target: <= 5% of one reload.
    - LoRA job - bare call with the LoRA already on (median of per-cycle differences): the
      switch plus the library's own work (parsing, PNG, signing), not the LoRA compute.
    - LoRA job - plain job (median of per-cycle differences): everything a LoRA adds to a
      job, running the LoRA layers included.
    Also: the pixels of the LoRA job and of the bare call with the LoRA on (must be equal),
    the switch called alone against diffusers' ``enable_lora`` + ``set_adapters`` +
    ``disable_lora``, and the one-time cost of a LoRA's first use (loading it).
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
import time
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
from _common import library_job as serve_library_job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="timed jobs per case in (1), (2)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--widths", type=parse_widths, default=DEFAULT_WIDTHS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lora-size", type=int, default=128)
    parser.add_argument("--lora-cycles", type=int, default=20, help="LoRA cycles in (3)")
    parser.add_argument("--profile", action="store_true", help="profile one job of each kind")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    set_threads(args.threads)

    import diffusers
    import torch

    from nostr_imagegen.engine.generate import Engine
    from nostr_imagegen.engine.quiet import quiet_libraries
    from nostr_imagegen.engine_config import EngineConfig
    from nostr_imagegen.nostr.keys import Keys

    quiet_libraries()

    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        folder, loras = build_model(Path(tmp), args.widths, loras=2)
        config = EngineConfig.from_mapping(
            engine_config_data(folder, steps=args.steps, guidance=args.guidance, loras=loras)
        )
        engine = Engine(config)
        provider, customer = Keys.generate(), Keys.generate()
        seed = 1234

        def library_job(text: str) -> Any:
            event, generation, _ = serve_library_job(engine, provider, text)
            return event, generation

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
        names3 = ("l0", "l1")
        texts = {
            name: request_json(customer, size=size3, steps=args.steps, seed=seed, lora=name)
            for name in names3
        }
        texts["none"] = request_json(customer, size=size3, steps=args.steps, seed=seed)
        lora_weight = config.loras["l0"].weight
        first_loads = {}
        for name in names3:
            # A first job with each LoRA loads it from disk (once per pipeline).
            first_loads[name] = timed(functools.partial(library_job, texts[name]))[0]
        library_job(texts["none"])
        plain_first = timed(lambda: library_job(texts["none"]))[0]

        # Time the switch calls inside the real jobs: the engine calls activate_loras twice
        # per LoRA job (the job's adapters, then none).
        entry = engine.cache.get("bench")
        activate = entry.activate_loras
        switch_log: list[float] = []

        def timed_activate(loras: Any) -> None:
            start = time.perf_counter()
            try:
                activate(loras)
            finally:
                switch_log.append(time.perf_counter() - start)

        setattr(entry, "activate_loras", timed_activate)  # noqa: B010 (instance attribute)

        def lora_job(name: str) -> tuple[float, float, Any]:
            before = len(switch_log)
            elapsed, (_, result) = timed(functools.partial(library_job, texts[name]))
            return elapsed, sum(switch_log[before:]), result

        def bare_lora_on(name: str) -> tuple[float, Any]:
            """The same call on the same pipeline with the LoRA already on: no switch."""
            activate([(name, lora_weight)])
            try:
                elapsed, (_, image) = timed(functools.partial(bare_call, pipe, size3))
            finally:
                activate([])
            return elapsed, image

        def naive_reload(name: str) -> tuple[float, float]:
            """What a DVM that reloads per job does before a LoRA job."""

            def add_lora(fresh: Any) -> None:
                fresh.load_lora_weights(str(loras[names3.index(name)]), adapter_name=name)
                fresh.set_adapters([name], adapter_weights=[lora_weight])

            load_time, fresh = timed(load)
            lora_time, _ = timed(functools.partial(add_lora, fresh))
            del fresh
            gc.collect()
            return load_time, load_time + lora_time

        lora_times: list[float] = []
        switch_times: list[float] = []
        bare_on_times: list[float] = []
        plain_times: list[float] = []
        reload_plain: list[float] = []
        reload_lora: list[float] = []
        by_difference: list[float] = []
        by_plain: list[float] = []
        same3 = True
        for cycle in range(args.lora_cycles):
            name = names3[cycle % 2]
            cycle_lora: list[float] = []
            cycle_bare: list[float] = []
            cycle_plain: list[float] = []
            order = ("engine", "bare") if cycle % 2 == 0 else ("bare", "engine")
            for case in order:
                if case == "engine":
                    # l0 and l1 alternate, so every LoRA job changes the adapter set.
                    for job_name in (name, names3[1 - names3.index(name)]):
                        elapsed, spent, result = lora_job(job_name)
                        cycle_lora.append(elapsed)
                        switch_times.append(spent)
                        if job_name == name:
                            engine_image = result.images[0]
                    cycle_plain += [timed(lambda: library_job(texts["none"]))[0] for _ in range(2)]
                else:
                    for job_name in (name, names3[1 - names3.index(name)]):
                        elapsed, image = bare_lora_on(job_name)
                        cycle_bare.append(elapsed)
                        if job_name == name:
                            bare_image = image
            same3 = same3 and engine_image.tobytes() == bare_image.tobytes()
            plain_s, lora_s = naive_reload(name)
            reload_plain.append(plain_s)
            reload_lora.append(lora_s)
            lora_times += cycle_lora
            bare_on_times += cycle_bare
            plain_times += cycle_plain
            # Neighbours in time share the machine's load: their differences are steadier.
            by_difference.append(median(cycle_lora) - median(cycle_bare))
            by_plain.append(median(cycle_lora) - median(cycle_plain))
        setattr(entry, "activate_loras", activate)  # noqa: B010

        # The same switch, called alone: the engine's way and diffusers' pipeline methods
        # (what the engine called per LoRA job before; each walks every module).
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(3 * args.lora_cycles):
            ours.append(timed(lambda: (activate([("l0", lora_weight)]), activate([])))[0])
            theirs.append(
                timed(
                    lambda: (
                        pipe.enable_lora(),
                        pipe.set_adapters(["l0"], adapter_weights=[lora_weight]),
                        pipe.disable_lora(),
                    )
                )[0]
            )
        reload_s, reload_lora_s = median(reload_plain), median(reload_lora)

        def share(seconds: float) -> str:
            return (
                f"{seconds * 1000:.2f} ms = {100 * seconds / reload_lora_s:.2f}% of a reload "
                f"with the LoRA, {100 * seconds / reload_s:.2f}% of from_pretrained alone"
            )

        switch_s = median(switch_times)
        first_lora = median(list(first_loads.values())) - plain_first
        print(f"\n(3) LoRA switching (l0 and l1 jobs alternating, {size3}x{size3})")
        print(f"    same pixels as the bare call with the LoRA already on: {same3}")
        print(f"    LoRA job (switches):          {spread(lora_times)}")
        print(f"    bare call, LoRA already on:   {spread(bare_on_times)}")
        print(f"    plain job (no LoRA):          {spread(plain_times)}")
        print(f"    reload: from_pretrained       {spread(reload_plain)}")
        print(f"    reload + load_lora_weights:   {spread(reload_lora)}")
        print(
            f"    switch calls inside the LoRA jobs (on + off, median of {len(switch_times)}, "
            f"max {max(switch_times) * 1000:.2f} ms):"
        )
        print(f"        {share(switch_s)}")
        verdicts = [
            "met" if switch_s <= 0.05 * total else "MISSED" for total in (reload_lora_s, reload_s)
        ]
        print(
            f"    target <= 5% of one reload: {verdicts[0]} "
            f"(against from_pretrained alone: {verdicts[1]})"
        )
        print(
            "    LoRA job - bare call with the LoRA already on (switch + library work, "
            f"median of {len(by_difference)} per-cycle differences):"
        )
        print(f"        {share(median(by_difference))}")
        print(
            "    LoRA job - plain job (switch + running the LoRA layers, "
            f"median of {len(by_plain)} per-cycle differences):"
        )
        print(f"        {share(median(by_plain))}")
        print(
            f"    on + off alone: activate_loras {median(ours) * 1000:.2f} ms; diffusers' "
            f"enable_lora + set_adapters + disable_lora {median(theirs) * 1000:.2f} ms"
        )
        print(
            f"    first use of a LoRA (load from disk): +{first_lora * 1000:.0f} ms = "
            f"{100 * first_lora / reload_s:.0f}% of from_pretrained (once per pipeline)"
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
