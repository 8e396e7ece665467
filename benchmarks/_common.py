"""Shared set-up for the engine benchmarks: the benchmark model, signed requests, timing.

The model is a random-weight pipeline in the Stable Diffusion 1.5 layout (four UNet levels,
two layers per block, cross-attention on the first three, a four-level VAE, a CLIP text
encoder) built by ``nostr_imagegen.testing.build_tiny_pipeline(wider=True)`` with
reduced widths, saved with ``save_pretrained`` and loaded back by the real diffusers loaders.
It draws noise, but every job runs the code a real SD 1.5 model runs, at a cost small enough
for a shared CPU.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys

PROMPT = "a lighthouse in a storm, dramatic lighting, 35mm photo"
DEFAULT_WIDTHS = (16, 32, 64, 64)


def parse_widths(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def build_model(root: Path, widths: Sequence[int], *, loras: int = 0) -> tuple[Path, list[Path]]:
    """The benchmark pipeline (seed 0) and ``loras`` random LoRAs for it, under ``root``."""
    from nostr_imagegen.testing import build_tiny_lora, build_tiny_pipeline

    folder = build_tiny_pipeline(root / "model", seed=0, widths=tuple(widths), wider=True)
    lora_files = [
        build_tiny_lora(root / f"lora-{index}", folder, seed=index + 1) for index in range(loras)
    ]
    return folder, lora_files


def engine_config_data(
    folder: Path, *, steps: int, guidance: float, loras: Sequence[Path] = ()
) -> dict[str, Any]:
    """Engine configuration offering the benchmark model as ``bench`` (and LoRAs l0, l1...)."""
    return {
        "models": {
            "bench": {
                "source": str(folder),
                "family": "sd15",
                "steps": steps,
                "guidance_scale": guidance,
                "native_size": 512,
            }
        },
        "loras": {
            f"l{index}": {"source": str(path), "family": "sd15", "weight": 0.8}
            for index, path in enumerate(loras)
        },
        "device": "cpu",
    }


def request_json(
    customer: Keys, *, size: int, steps: int, seed: int, lora: str | None = None
) -> str:
    """A signed kind 5100 request, as the JSON text a relay delivers."""
    tags: list[tuple[str, ...]] = [
        ("i", PROMPT, "text"),
        ("param", "model", "bench"),
        ("param", "size", f"{size}x{size}"),
        ("param", "seed", str(seed)),
        ("param", "steps", str(steps)),
        ("output", "image/png"),
    ]
    if lora is not None:
        tags.append(("param", "lora", lora))
    return sign_event(UnsignedEvent(kind=5100, tags=tuple(tags)), customer).to_json()


def library_job(engine: Any, provider: Keys, request_text: str) -> tuple[Any, Any, Any]:
    """One warm job through the library, as a DVM runs it: parse and verify the request,
    generate, encode, and build and sign the result. Returns ``(result event, generation,
    encoded image)``."""
    from nostr_imagegen.engine.encode import encode_result
    from nostr_imagegen.imagejob.imeta import ImageLink
    from nostr_imagegen.imagejob.request import parse_image_job
    from nostr_imagegen.imagejob.results import build_result
    from nostr_imagegen.nostr.event import parse_event

    job = parse_image_job(parse_event(request_text), provider=provider)
    generation = engine.generate(job)
    (encoded,) = encode_result(job, generation, engine.config.output)
    link = ImageLink(
        url=f"https://blossom.example/{encoded.filename}",
        mime=encoded.mime,
        sha256=encoded.sha256,
        width=encoded.width,
        height=encoded.height,
        size_bytes=len(encoded.data),
    )
    return sign_event(build_result(job, [link], keys=provider), provider), generation, encoded


def bare_png(image: Image.Image) -> bytes:
    """What a bare script does to publish an image: Pillow's PNG encoder, defaults."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """``median (min-max)`` in seconds, for the report."""
    return f"{median(values):.3f}s ({min(values):.3f}-{max(values):.3f})"


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # Only settable before the first parallel work; later calls raise and change nothing.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
