"""Several images per job: ``["param", "num_images", "N"]``, generated in one pipeline call.

    count = images_asked(job, "tiny", model_config)  # 1 when absent; JobRejected beyond max
    seeds = image_seeds(seed, count)                 # (seed, seed + 1, ..., seed + N - 1)
    pipeline(..., num_images_per_prompt=count, generator=generators("cpu", seeds))

Image ``k`` of a job with seed ``S`` is drawn from its own generator seeded ``S + k`` (the
convention of A1111's batches), so it is the picture a one-image job with seed ``S + k``
gives, up to the rounding of batched kernels: a customer can ask for four, pick one and
retype its seed. The result carries every seed (``GenerationResult.seeds``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nostr_imagegen.engine_config import ModelConfig
from nostr_imagegen.errors import JobRejected
from nostr_imagegen.imagejob.model import ImageJob

__all__ = ["NUM_IMAGES_PARAM", "generators", "image_seeds", "images_asked"]

#: The request param asking for several images: ``["param", "num_images", "4"]``.
NUM_IMAGES_PARAM = "num_images"
#: Seeds stay below this (torch generators take 64-bit seeds; the parser's bound).
_SEED_LIMIT = 2**63


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
