"""Embed the image engine in a program that already speaks Nostr its own way.

Your program receives a kind 5100 request from its own relay code, hands it to
nostr_imagegen for the two things it does not want to write (reading the request into a
typed job, and turning the job into pictures), and publishes the answers itself.

This example runs offline: it builds a tiny random-weight pipeline in a temporary folder
(the pictures are noise, the code path is the real one), receives one signed request
(signed here with a throw-away key, standing in for your relay code), generates with
progress reports and a cancel switch, encodes the image as the ``[output]`` configuration
says, and prints what your program would upload and publish.

    .venv/bin/python examples/embed_engine.py
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path

from nostr_imagegen import (
    ImageJob,
    JobRejected,
    Keys,
    UnsignedEvent,
    parse_event,
    parse_image_job,
    sign_event,
)
from nostr_imagegen.engine import (
    Engine,
    EngineConfig,
    EngineError,
    GenerationResult,
    JobCancelled,
    encode_result,
    quiet_libraries,
)
from nostr_imagegen.testing import TINY_NATIVE_SIZE, build_tiny_lora, build_tiny_pipeline


def incoming_request_json() -> str:
    """What your relay code hands over: a signed kind 5100 event as JSON text."""
    customer = Keys.generate()
    template = UnsignedEvent(
        kind=5100,
        tags=(
            ("i", "a purple ostrich watching the sunset", "text"),
            ("param", "ratio", "16:9"),
            ("param", "lora", "noise", "0.6"),
            ("param", "negative_prompt", "blurry"),
            ("param", "upscale", "2"),
            ("output", "image/webp"),
        ),
    )
    return sign_event(template, customer).to_json()


def engine_with_a_tiny_model(folder: Path) -> Engine:
    """An engine offering one model and one LoRA, configured from a mapping (a TOML file
    read with ``load_engine_config`` works the same)."""
    model = build_tiny_pipeline(folder / "tiny-sd15", seed=0)
    lora = build_tiny_lora(folder / "noise-lora", model, seed=1)
    config = EngineConfig.from_mapping(
        {
            "models": {
                "tiny": {
                    "source": str(model),
                    "family": "sd15",
                    "steps": 4,
                    "guidance_scale": 5.0,
                    "native_size": 2 * TINY_NATIVE_SIZE,  # 128: room for a 16:9 shape
                }
            },
            "loras": {"noise": {"source": str(lora), "family": "sd15"}},
            "limits": {"max_steps": 20, "max_upscale": 2},
            # Metadata in the files: prompt, seed, model... (never for an encrypted job).
            "output": {"embed_metadata": True, "quality": 85},
        }
    )
    return Engine(config, device="cpu")


async def serve(engine: Engine, job: ImageJob) -> GenerationResult:
    """Run one job without blocking the event loop your relay code lives on."""
    loop = asyncio.get_running_loop()
    cancel = threading.Event()  # set it when the customer sends a kind 5 deletion

    def progress(step: int, total: int) -> None:
        # Called on the engine's thread after each denoising step: hop back to the loop,
        # where your code would publish a `processing` feedback event now and then.
        loop.call_soon_threadsafe(print, f"  step {step}/{total}")

    return await asyncio.to_thread(engine.generate, job, progress=progress, cancel=cancel)


def main() -> None:
    quiet_libraries()  # no loading bars or library chatter on your program's stderr
    with tempfile.TemporaryDirectory() as tmp:
        engine = engine_with_a_tiny_model(Path(tmp))
        offer = engine.offered()
        print(f"offering models {offer.model_names}, LoRAs {offer.lora_names}")

        job = parse_image_job(parse_event(incoming_request_json()))
        try:
            plan = engine.plan(job)  # cheap: reject before any work, with a readable reason
        except JobRejected as exc:
            print(f"would publish `error` feedback: {exc}")
            return
        size = plan.dimensions
        print(
            f"job {job.id[:12]}: {plan.model} at {size.width}x{size.height}, "
            f"delivered {size.output_width}x{size.output_height}, {plan.steps} steps"
        )
        try:
            result = asyncio.run(serve(engine, job))
        except JobCancelled:
            print("cancelled by the customer")
            return
        except EngineError as exc:
            print(f"would publish `error` feedback: {exc}")
            return

        # The request's output type (else [output] default_format), at the configured
        # quality, with metadata as configured.
        for encoded in encode_result(job, result, engine.config.output):
            print(
                f"upload {encoded.filename} ({encoded.mime}, {encoded.width}x{encoded.height}, "
                f"{len(encoded.data)} bytes), then publish a kind 6100 result linking it"
            )
        print(f"seed {result.seed}, LoRAs {result.loras}, {result.elapsed:.2f}s")


if __name__ == "__main__":
    main()
