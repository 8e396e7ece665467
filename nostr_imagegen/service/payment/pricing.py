"""What a job costs, from ``[pricing]``: a flat price (per model or ``job_msats``) plus
per megapixel, per step above the model's default, per extra image and per LoRA.

    price = models.get(model, job_msats)
          + per_megapixel_msats * width * height / 1e6   (rounded up to a msat)
          + per_step_msats * max(0, steps - default_steps)
          + per_extra_image_msats * (images - 1)
          + per_lora_msats * len(loras)

The job's model, size and steps are the engine's plan of it (``Engine.plan``: what will
actually run), so a request cannot get a discount by leaving a param out; ``images`` is the
plan's ``num_images`` (``["param", "num_images", "N"]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.nostr.kinds import MAX_MSATS
from nostr_imagegen.service.payment.settings import PricingConfig

__all__ = ["ConfigPricing", "price_plan", "price_tags"]


def price_plan(pricing: PricingConfig, plan: Any, *, default_steps: int | None) -> int:
    """The price in msats of one planned job (an ``engine.generate.GenerationPlan`` or an
    object with its ``model``, ``dimensions``, ``steps`` and ``loras``)."""
    total = int(pricing.models.get(plan.model, pricing.job_msats))
    dimensions = plan.dimensions
    total += math.ceil(pricing.per_megapixel_msats * dimensions.width * dimensions.height / 1e6)
    if default_steps is not None:
        total += pricing.per_step_msats * max(0, int(plan.steps) - default_steps)
    images = int(getattr(plan, "num_images", 1))
    total += pricing.per_extra_image_msats * max(0, images - 1)
    total += pricing.per_lora_msats * len(plan.loras)
    return int(min(total, MAX_MSATS))


class ConfigPricing:
    """A ``PricingPolicy`` from ``[pricing]``: ``pricing(job)`` -> msats, or None (free).

    ``plan`` is the engine's ``plan`` (cheap, loads nothing; ``JobRejected`` propagates, the
    runner already answers it); ``default_steps`` maps a model name to its default steps.
    """

    def __init__(
        self,
        config: PricingConfig,
        *,
        plan: Callable[[ImageJob], Any],
        default_steps: Mapping[str, int | None],
    ) -> None:
        self.config = config
        self._plan = plan
        self._default_steps = dict(default_steps)

    def __call__(self, job: ImageJob) -> int | None:
        if self.config.free:
            return None
        plan = self._plan(job)
        amount = price_plan(self.config, plan, default_steps=self._default_steps.get(plan.model))
        return amount or None


def price_tags(pricing: PricingConfig) -> dict[str, Any]:
    """The prices as the NIP-89 announcement states them (``content.pricing``), msats."""
    stated: dict[str, Any] = {"unit": "msats", "job_msats": pricing.job_msats}
    for name in (
        "per_megapixel_msats",
        "per_step_msats",
        "per_extra_image_msats",
        "per_lora_msats",
        "free_jobs_per_day",
    ):
        value = getattr(pricing, name)
        if value:
            stated[name] = value
    if pricing.models:
        stated["models"] = dict(pricing.models)
    return stated
