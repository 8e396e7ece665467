"""Several images in one pipeline call: a job's ``num_images``, and several jobs batched.

Several images per job: ``["param", "num_images", "N"]``, generated in one pipeline call.

    count = images_asked(job, "tiny", model_config)  # 1 when absent; JobRejected beyond max
    seeds = image_seeds(seed, count)                 # (seed, seed + 1, ..., seed + N - 1)
    pipeline(..., num_images_per_prompt=count, generator=generators("cpu", seeds))

Image ``k`` of a job with seed ``S`` is drawn from its own generator seeded ``S + k`` (the
convention of A1111's batches), so it is the picture a one-image job with seed ``S + k``
gives, up to the rounding of batched kernels: a customer can ask for four, pick one and
retype its seed. The result carries every seed (``GenerationResult.seeds``).

Several jobs per call: text-to-image jobs whose plans have equal ``batch_key`` (same model,
LoRAs, sampler, size, steps, guidance, image count) share one call, up to the model's
``max_batch``; each keeps its own prompt, seeds, progress and cancel flag:

    outcomes = engine.generate_batch([BatchRequest(job_a, progress=report_a), BatchRequest(job_b)])
    # [GenerationResult | NostrImagegenError, ...] in request order

The call gets the prompts as a list and ``num_images_per_prompt = N``; diffusers lays the
images out prompt by prompt (job 0's N images, then job 1's...), the order the generators
are given in, so every image is the one its job would have drawn alone, up to the rounding
of batched kernels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from nostr_imagegen.engine_config import ModelConfig
from nostr_imagegen.errors import JobRejected
from nostr_imagegen.imagejob.model import ImageJob

__all__ = ["NUM_IMAGES_PARAM", "BatchRequest", "generators", "image_seeds", "images_asked"]

#: The request param asking for several images: ``["param", "num_images", "4"]``.
NUM_IMAGES_PARAM = "num_images"
#: Seeds stay below this (torch generators take 64-bit seeds; the parser's bound).
_SEED_LIMIT = 2**63


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One job of ``Engine.generate_batch``, with its own progress callback and cancel flag
    (the same meaning as ``Engine.generate``'s)."""

    job: ImageJob
    progress: Callable[[int, int], None] | None = None
    cancel: threading.Event | None = None


def images_asked(job: ImageJob, model_name: str, model: ModelConfig) -> int:
    """How many images ``job`` asks for: 1 without the param, else 1 to ``max_images``.
    Raises ``JobRejected`` for a value that is not such a whole number."""
    values = job.extra_params.get(NUM_IMAGES_PARAM)
    if values is None:
        return 1
    most = model.max_images
    value = values[0] if len(values) == 1 else " ".join(values)
    tag = ("param", NUM_IMAGES_PARAM, value[:16])
    if len(values) != 1 or not value.isascii() or not value.isdigit() or len(value) > 3:
        raise JobRejected(
            f"num_images must be a whole number from 1 to {most}, got {value[:16]!r}", tag=tag
        )
    count = int(value)
    if not 1 <= count <= most:
        raise JobRejected(
            f"{count} images per job are not served for model {model_name!r}; ask for 1 to {most}",
            tag=tag,
        )
    return count


def image_seeds(seed: int, count: int) -> tuple[int, ...]:
    """The seed of each image: ``seed``, ``seed + 1``... wrapping below 2**63."""
    return tuple((seed + index) % _SEED_LIMIT for index in range(count))


def generators(device: str, seeds: Sequence[int]) -> list[torch.Generator]:
    """One generator per image on ``device``, each seeded with its image's seed."""
    return [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
