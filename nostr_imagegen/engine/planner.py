"""What a job will run as, decided before any model is loaded: ``Planner.plan``.

    planner = Planner(config)                  # no device, no torch call, nothing loaded
    plan = planner.plan(job)                   # JobRejected now, before any GPU time
    plan.model, plan.dimensions, plan.steps, plan.batch_key

The engine plans every job with one (``Engine.plan``), and so does a front that hands jobs to
engines elsewhere (several GPUs, Ray workers): it checks and routes jobs with the same rules
the engines run them by, without holding a pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

from nostr_imagegen.engine import batch, refine
from nostr_imagegen.engine.encode import output_type
from nostr_imagegen.engine.families import family_spec
from nostr_imagegen.engine.family_rules import check_model_config, family_decision, model_params
from nostr_imagegen.engine.refine import RefinePlan
from nostr_imagegen.engine.registry import Registry
from nostr_imagegen.engine.samplers import choose_sampler, offered_samplers
from nostr_imagegen.engine_config import EngineConfig, EngineLimits
from nostr_imagegen.errors import JobRejected
from nostr_imagegen.imagejob.dimensions import Dimensions, ModelFamily, job_dimensions
from nostr_imagegen.imagejob.model import ImageJob, Ratio

__all__ = [
    "DEFAULT_GUIDANCE_SCALE",
    "DEFAULT_STEPS",
    "DEFAULT_STRENGTH",
    "EngineOffer",
    "GenerationPlan",
    "OfferedLora",
    "OfferedModel",
    "Planner",
]

#: Stable Diffusion 1.5's defaults; each family's own are in ``engine.families``.
DEFAULT_STEPS: Final = family_spec(ModelFamily.SD15).steps
DEFAULT_GUIDANCE_SCALE: Final = family_spec(ModelFamily.SD15).guidance_scale
DEFAULT_STRENGTH: Final = 0.75


def format_number(value: float) -> str:
    """``7.0`` as ``7``, ``7.5`` as ``7.5``: numbers in messages, tags and metadata."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True, slots=True)
class GenerationPlan:
    """What a job will run as, decided before any model is loaded."""

    model: str
    family: ModelFamily
    loras: tuple[tuple[str, float], ...]
    dimensions: Dimensions
    steps: int
    guidance_scale: float
    #: img2img strength; None for text-to-image.
    strength: float | None
    #: MIME type the images will be encoded as (``image/png``, ``image/jpeg``, ``image/webp``).
    output: str
    #: Sampler name (``nostr_imagegen.sampler_names``); None: the model's own scheduler.
    sampler: str | None = None
    #: Images generated in the one pipeline call (``["param", "num_images", "N"]``).
    num_images: int = 1
    #: The refine pass after generation (``engine.refine``); None: plain upscaling.
    refine: RefinePlan | None = None
    #: The negative prompt the pipeline gets (None when the job has none or it is ignored).
    negative_prompt: str | None = None
    #: FLUX.1's second guidance pass, when the model's config turns it on.
    true_cfg_scale: float | None = None
    #: Params of the job dropped because the model's ``ignore_unsupported`` lists them.
    ignored: tuple[str, ...] = ()

    @property
    def batch_key(self) -> Hashable | None:
        """Jobs whose plans have equal keys can share one pipeline call (``Engine.generate_batch``):
        same model, LoRAs and weights, sampler, size, steps, guidance, image count, and either
        all or none with a negative prompt. None: the job runs alone (img2img, a refine pass)."""
        if self.strength is not None or self.refine is not None:
            return None
        return (
            self.model,
            self.loras,
            self.sampler,
            self.dimensions.width,
            self.dimensions.height,
            self.steps,
            self.guidance_scale,
            self.true_cfg_scale,
            self.num_images,
            self.negative_prompt is None,
        )


@dataclass(frozen=True, slots=True)
class OfferedModel:
    name: str
    family: ModelFamily
    default: bool
    #: The sampler names its requests may give.
    samplers: tuple[str, ...] = ()
    #: Most images one job may ask for.
    max_images: int = 1
    #: The request params it takes (``family_rules.model_params``).
    params: tuple[str, ...] = ()
    #: Params it drops instead of refusing the job (its ``ignore_unsupported``).
    ignores: tuple[str, ...] = ()
    #: Largest square it generates under the limits, ``"WxH"``.
    max_size: str = ""


@dataclass(frozen=True, slots=True)
class OfferedLora:
    name: str
    family: ModelFamily
    weight: float


@dataclass(frozen=True, slots=True)
class EngineOffer:
    """What this engine serves, for NIP-89 handler information (``build_handler_info``)."""

    models: tuple[OfferedModel, ...]
    loras: tuple[OfferedLora, ...]
    ratios: tuple[Ratio, ...]
    limits: EngineLimits

    @property
    def model_names(self) -> list[str]:
        return [model.name for model in self.models]

    @property
    def lora_names(self) -> list[str]:
        return [lora.name for lora in self.loras]


class Planner:
    """Checks jobs against an ``EngineConfig`` and decides how each will run (see the
    module doc). Cheap to build and to call: nothing is loaded."""

    def __init__(self, config: EngineConfig) -> None:
        for name, model in config.models.items():
            check_model_config(name, model)
        self.config = config
        self.registry = Registry(config)

    def max_batch(self, model: str) -> int:
        """Most jobs of ``model`` one pipeline call takes (``[models.X] max_batch``)."""
        return self.config.models[model].max_batch

    def offered(self) -> EngineOffer:
        """The models, LoRAs, ratios and limits this engine serves."""
        names = self.registry.model_names()
        models = tuple(self._offered_model(name, name == names[0]) for name in names)
        loras = tuple(
            OfferedLora(name, lora.family, lora.weight) for name, lora in self.config.loras.items()
        )
        return EngineOffer(
            models=models, loras=loras, ratios=tuple(Ratio), limits=self.config.limits
        )

    def _offered_model(self, name: str, default: bool) -> OfferedModel:
        model = self.config.models[name]
        limits = self.config.limits
        multiple = model.family.multiple
        side = min(limits.max_side, math.isqrt(limits.max_pixels)) // multiple * multiple
        return OfferedModel(
            name,
            model.family,
            default,
            params=model_params(model, loras=bool(self.registry.lora_names(model.family))),
            ignores=tuple(model.ignore_unsupported),
            max_size=f"{side}x{side}",
            samplers=offered_samplers(model),
            max_images=model.max_images,
        )

    def plan(self, job: ImageJob, *, img2img: bool | None = None) -> GenerationPlan:
        """Check ``job`` against the offer and the limits; raises ``JobRejected``.

        Everything that can be decided without a model is decided here: the model and
        LoRAs offered, sizes, steps, guidance, strength and the output type. Only what
        depends on a loaded pipeline (whether it takes a negative prompt, can alter images)
        is left to ``generate``. ``img2img`` says whether an input image will be given
        (default: when the job has an image URL). Cheap: nothing is loaded.
        """
        if img2img is None:
            img2img = job.image_url is not None
        output = output_type(job, self.config.output)
        name, model = self.registry.resolve_model(job.model)
        loras = self.registry.resolve_loras(job.loras, model.family)
        limits = self.config.limits
        dimensions = refine.refined_dimensions(
            job,
            model.family,
            model,
            limits=limits.dimension_limits(),
            default_upscale=self.config.upscaler.default_factor,
        ) or job_dimensions(
            job,
            model.family,
            native_size=model.native_size,
            limits=limits.dimension_limits(),
            default_upscale=self.config.upscaler.default_factor,
        )
        sampler = choose_sampler(job, name, model)
        num_images = batch.images_asked(job, name, model)
        steps = self._steps(job, model.steps, model.family, limits)
        guidance = self._guidance(job, model.guidance_scale, model.family, limits)
        family = family_decision(name, model, job, guidance_scale=guidance, img2img=img2img)
        strength: float | None = None
        if img2img:
            strength = job.strength if job.strength is not None else model.strength
            if strength is None:
                strength = DEFAULT_STRENGTH
            if not 0.0 < strength <= 1.0:
                raise JobRejected(
                    f"strength {strength:g} must be above 0 and at most 1",
                    tag=("param", "strength", format_number(strength)),
                )
            # diffusers runs int(steps * strength) steps; at least one is needed.
            if int(steps * strength) < 1:
                needed = math.ceil(1 / strength)
                if job.steps is not None or needed > limits.max_steps:
                    raise JobRejected(
                        f"{steps} steps at strength {strength:g} leave no step to run; "
                        f"use at least {needed} steps or a higher strength",
                        tag=("param", "steps", str(steps)),
                    )
                steps = needed  # the model's default is a preference, not the customer's ask
        return GenerationPlan(
            model=name,
            family=model.family,
            loras=tuple(loras),
            dimensions=dimensions,
            steps=steps,
            guidance_scale=guidance,
            strength=strength,
            output=output,
            sampler=sampler,
            num_images=num_images,
            refine=refine.refine_plan(model.refine, dimensions, steps),
            negative_prompt=family.negative_prompt,
            true_cfg_scale=family.true_cfg_scale,
            ignored=family.ignored,
        )

    @staticmethod
    def _steps(
        job: ImageJob, default: int | None, family: ModelFamily, limits: EngineLimits
    ) -> int:
        if job.steps is None:
            if default is not None:
                return default
            return min(family_spec(family).steps, limits.max_steps)
        if not 1 <= job.steps <= limits.max_steps:
            raise JobRejected(
                f"{job.steps} steps are not served here; use 1 to {limits.max_steps}",
                tag=("param", "steps", str(job.steps)),
            )
        return job.steps

    @staticmethod
    def _guidance(
        job: ImageJob, default: float | None, family: ModelFamily, limits: EngineLimits
    ) -> float:
        if job.guidance_scale is None:
            if default is not None:
                return default
            return min(family_spec(family).guidance_scale, limits.max_guidance_scale)
        value = float(job.guidance_scale)
        if not (math.isfinite(value) and 0.0 <= value <= limits.max_guidance_scale):
            raise JobRejected(
                f"guidance_scale {value:g} is not served here; use 0 to "
                f"{format_number(limits.max_guidance_scale)}",
                tag=("param", "guidance_scale", format_number(value)),
            )
        return value
