"""Peak memory of serving jobs through the library vs. bare diffusers, same model, same jobs.

    .venv/bin/python benchmarks/bench_memory.py [--jobs 4] [--repeat 2] [--steps 2]
        [--size 512] [--widths 16,32,64,64] [--threads 1]

The benchmark model (see ``_common.py``) is built once; then each case runs in a fresh
Python process (``subprocess``), ``--repeat`` times, alternating:

library  parse_event + parse_image_job + Engine.generate + encode_result + build_result +
         sign_event for each of ``--jobs`` signed requests (different seeds).
bare     AutoPipelineForText2Image.from_pretrained once, then pipe(...) + Pillow PNG for the
         same prompts, sizes, steps and seeds.

Each child reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (peak resident set, KiB on
Linux) at the end, and its resident set after imports and after loading the model
(``/proc/self/status`` VmRSS). Reported: the median peak of each case and their ratio.
Target: library / bare <= 1.1.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
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
    library_job,
    parse_widths,
    request_json,
    set_threads,
)


def _rss_kib() -> int:
    """Current resident set from /proc (KiB); 0 where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def child_library(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch  # noqa: F401  (imported first in both children, like any engine)

    from nostr_imagegen.engine.generate import Engine
    from nostr_imagegen.engine.quiet import quiet_libraries
    from nostr_imagegen.engine_config import EngineConfig
    from nostr_imagegen.nostr.keys import Keys

    quiet_libraries()
    after_import = _rss_kib()
    engine = Engine(
        EngineConfig.from_mapping(engine_config_data(folder, steps=args.steps, guidance=7.5))
    )
    engine.warm("bench")
    after_load = _rss_kib()
    provider, customer = Keys.generate(), Keys.generate()
    sizes = []
    for seed in range(args.jobs):
        text = request_json(customer, size=args.size, steps=args.steps, seed=seed)
        _, _, encoded = library_job(engine, provider, text)
        sizes.append(len(encoded.data))
    return {"after_import": after_import, "after_load": after_load, "bytes": sizes}


def child_bare(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    import diffusers
    import torch

    from nostr_imagegen.engine.quiet import quiet_libraries

    quiet_libraries()
    after_import = _rss_kib()
    auto: Any = diffusers.AutoPipelineForText2Image
    pipe = auto.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    after_load = _rss_kib()
    sizes = []
    for seed in range(args.jobs):
        image = pipe(
            PROMPT,
            height=args.size,
            width=args.size,
            num_inference_steps=args.steps,
            guidance_scale=7.5,
            generator=torch.Generator("cpu").manual_seed(seed),
        ).images[0]
        sizes.append(len(bare_png(image)))
    return {"after_import": after_import, "after_load": after_load, "bytes": sizes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--widths", type=parse_widths, default=DEFAULT_WIDTHS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=("library", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        set_threads(args.threads)
        child = child_library if args.child == "library" else child_bare
        report = child(args.folder, args)
        report["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(report))
        return 0

    from nostr_imagegen.engine.quiet import quiet_libraries

    quiet_libraries()  # building the model in this process prints the same noise
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        set_threads(args.threads)
        folder, _ = build_model(Path(tmp), args.widths)
        common = [
            f"--jobs={args.jobs}",
            f"--steps={args.steps}",
            f"--size={args.size}",
            f"--threads={args.threads}",
            f"--folder={folder}",
        ]
        results: dict[str, list[dict[str, Any]]] = {"library": [], "bare": []}
        for run in range(args.repeat):
            order = ("library", "bare") if run % 2 == 0 else ("bare", "library")
            for case in order:
                completed = subprocess.run(
                    [sys.executable, __file__, f"--child={case}", *common],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                results[case].append(json.loads(completed.stdout.strip().splitlines()[-1]))

    print(
        f"{args.jobs} jobs of {args.size}x{args.size}, {args.steps} steps, UNet widths "
        f"{args.widths}, {args.repeat} fresh processes per case (KiB, medians)"
    )
    peaks = {}
    for case, reports in results.items():
        peaks[case] = statistics.median(r["peak"] for r in reports)
        imports = statistics.median(r["after_import"] for r in reports)
        loaded = statistics.median(r["after_load"] for r in reports)
        print(
            f"  {case:8} after imports {imports:>9,.0f}   after load {loaded:>9,.0f}   "
            f"peak {peaks[case]:>9,.0f}"
        )
    if results["library"][0]["bytes"] != results["bare"][0]["bytes"]:
        print("  note: PNG sizes differ between the cases (different images?)")
    ratio = peaks["library"] / peaks["bare"]
    verdict = "met" if ratio <= 1.1 else "MISSED"
    print(f"  peak RSS library / bare: {ratio:.3f}  target <= 1.1: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
