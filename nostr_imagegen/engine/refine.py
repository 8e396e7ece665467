"""The refining upscale (A1111's "hires fix"): enlarge, then redraw the detail with img2img.

    [models.sd15.refine]
    upscaler = "lanczos"        # or "learned": the engine's [upscaler] model
    strength = 0.3              # how much of the enlarged image the img2img pass redraws
    steps = 20                  # before strength; default: the job's steps

With it configured, a job's ``upscale`` factor, and a ``size`` beyond the model's native pixel
budget (``refined_dimensions``), are made by generating at the native budget, enlarging each
image to the delivered size and running the model's img2img pipeline over it at ``strength``
with the same prompt, negative prompt, guidance, LoRAs, sampler and per-image seeds. A plain
upscale only interpolates; the refine pass draws detail the model knows at that scale.

It needs the model's img2img pipeline (``has_img2img``); a job on a model without one is
refused before anything is generated. The img2img pass runs at the delivered size (snapped to
the family's multiple), so its memory grows with it: VAE tiling (``vae_tiling = true``)
keeps the decode bounded.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from nostr_imagegen.engine.upscale import Upscaler
from nostr_imagegen.engine_config import ModelConfig, RefineConfig
from nostr_imagegen.errors import JobRejected
from nostr_imagegen.imagejob.dimensions import (
    DimensionLimits,
    Dimensions,
    ModelFamily,
    resolve_dimensions,
)
from nostr_imagegen.imagejob.model import ImageJob

__all__ = [
    "RefinePlan",
    "check_refinable",
    "has_img2img",
    "refine_images",
    "refine_plan",
    "refined_dimensions",
]


@dataclass(frozen=True, slots=True)
class RefinePlan:
    """How one job's images are refined after generation."""

    upscaler: str
    strength: float
    #: Steps before strength; diffusers runs ``int(steps * strength)`` of them (at least 1).
    steps: int


def refine_plan(
    refine: RefineConfig | None, dimensions: Dimensions, steps: int
) -> RefinePlan | None:
    """The refine pass a job gets: None when the model has none configured or the job is
    not enlarged. The steps are raised so that at least one img2img step runs."""
    if refine is None or not dimensions.upscale > 1.0:
        return None
    base = refine.steps if refine.steps is not None else steps
    return RefinePlan(
        upscaler=refine.upscaler,
        strength=refine.strength,
        steps=max(base, math.ceil(1 / refine.strength)),
    )


def refined_dimensions(
    job: ImageJob,
    family: ModelFamily,
    model: ModelConfig,
    *,
    limits: DimensionLimits,
    default_upscale: float | None,
) -> Dimensions | None:
    """For a model with a refine pass, a ``size`` whose area is beyond the native budget
    (native side squared) is generated at that budget, at the size's aspect, and enlarged to
    it; None when that does not apply (the usual ``job_dimensions`` sizes the job).

    ``1920x1080`` on an SD 1.5 model (native 512): generated at 704x384, delivered at
    1920x1080 (times the job's ``upscale``). Raises ``JobRejected`` when the delivered size
    is beyond ``max_output_side`` or the enlargement beyond ``max_upscale``.
    """
    if model.refine is None or job.size is None:
        return None
    native = model.native_size if model.native_size is not None else family.native_size
    want_w, want_h = job.size
    if want_w * want_h <= native * native:
        return None
    tag = ("param", "size", f"{want_w}x{want_h}")
    if not all(limits.min_side <= side <= limits.max_side for side in job.size):
        raise JobRejected(
            f"size {want_w}x{want_h} is not served here: each side must be from "
            f"{limits.min_side} to {limits.max_side} pixels",
            tag=tag,
        )
    scale = math.sqrt(native * native / (want_w * want_h))
    generated = resolve_dimensions(
        family,
        size=(max(1, round(want_w * scale)), max(1, round(want_h * scale))),
        native_size=native,
        limits=DimensionLimits(
            min_side=1,
            max_side=limits.max_side,
            max_pixels=limits.max_pixels,
            max_upscale=limits.max_upscale,
            max_output_side=limits.max_output_side,
        ),
    )
    factor = job.upscale if job.upscale is not None else (default_upscale or 1.0)
    out_w, out_h = round(want_w * factor), round(want_h * factor)
    enlarge = max(out_w / generated.width, out_h / generated.height)
    if max(out_w, out_h) > limits.max_output_side:
        raise JobRejected(
            f"{out_w}x{out_h} is larger than this provider delivers: at most "
            f"{limits.max_output_side} pixels a side",
            tag=tag,
        )
    if enlarge > limits.max_upscale:
        raise JobRejected(
            f"size {want_w}x{want_h} would be enlarged {enlarge:.2f}x from "
            f"{generated.width}x{generated.height}; at most {limits.max_upscale:g}x here",
            tag=tag,
        )
    return Dimensions(
        width=generated.width,
        height=generated.height,
        upscale=enlarge,
        output_width=out_w,
        output_height=out_h,
    )


def has_img2img(pipeline: Any) -> bool:
    """Whether diffusers has an img2img pipeline for this text-to-image pipeline's class
    (``AutoPipelineForImage2Image``'s mapping), the capability a refine pass needs."""
    auto: Any = importlib.import_module("diffusers.pipelines.auto_pipeline")
    name = type(pipeline).__name__
    try:
        found = auto._get_task_class(
            auto.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, name, throw_error_if_not_exist=False
        )
    except (AttributeError, TypeError, ValueError):  # the mapping's shape changed
        return False
    return found is not None


def check_refinable(pipeline: Any, model: str, tag: tuple[str, ...]) -> None:
    """Refuse a refined job on a model without img2img, before anything is generated;
    ``tag`` is the job's param that asked for the enlargement."""
    if not has_img2img(pipeline):
        raise JobRejected(
            f"model {model!r} cannot make an upscaled or enlarged image here: its refine "
            "pass needs an img2img pipeline, which this model family has not; ask for the "
            "native size without upscale",
            tag=tag,
        )


def _snap_up(value: int, multiple: int) -> int:
    return max(multiple, math.ceil(value / multiple) * multiple)


def refine_images(
    images: list[Image.Image],
    *,
    img2img: Any,
    plan: RefinePlan,
    upscaler: Upscaler,
    output_size: tuple[int, int],
    multiple: int,
    call_arguments: Mapping[str, Any],
    run: Callable[[Any, dict[str, Any]], list[Image.Image]],
) -> list[Image.Image]:
    """Enlarge ``images`` with ``upscaler`` and redraw them in one img2img call.

    ``call_arguments`` are the text-to-image call's (prompt, negative prompt, guidance,
    generators, step callback); size arguments are dropped and the prompts repeated per
    image. ``run(pipeline, kwargs)`` makes the call (the engine's, which applies the job's
    sampler). Returns images of exactly ``output_size``.
    """
    width, height = output_size
    work = (_snap_up(width, multiple), _snap_up(height, multiple))
    enlarged = [_enlarge(image, work, upscaler) for image in images]
    count = len(enlarged)
    kwargs = {
        key: value
        for key, value in call_arguments.items()
        if key not in {"width", "height", "image", "strength", "num_images_per_prompt"}
    }
    kwargs["prompt"] = [call_arguments["prompt"]] * count
    if "negative_prompt" in call_arguments:
        kwargs["negative_prompt"] = [call_arguments["negative_prompt"]] * count
    kwargs.update(
        image=enlarged,
        strength=plan.strength,
        num_inference_steps=plan.steps,
        num_images_per_prompt=1,
    )
    redrawn = run(img2img, kwargs)
    return [
        image if image.size == output_size else image.resize(output_size, Image.Resampling.LANCZOS)
        for image in redrawn
    ]


def _enlarge(image: Image.Image, size: tuple[int, int], upscaler: Upscaler) -> Image.Image:
    factor = max(size[0] / image.width, size[1] / image.height)
    enlarged = upscaler.upscale(image, factor) if factor > 1.0 else image
    if enlarged.size != size:
        enlarged = enlarged.resize(size, Image.Resampling.LANCZOS)
    return enlarged
