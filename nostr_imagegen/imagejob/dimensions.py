"""From a job's ``ratio`` / ``size`` / ``upscale`` to the pixels the engine generates and delivers.

    ratio  ["param", "ratio", "16:9"]     keep the family's pixel budget (native side squared)
                                          at that aspect, each side snapped to the multiple
    size   ["param", "size", "1000x750"]  generate at the size snapped to the multiple,
                                          deliver exactly 1000x750 (times the upscale factor)
    none                                  the family's native square
    upscale ["param", "upscale", "2"]     output = delivered size x factor

``size`` wins over ``ratio``. A request beyond the operator's ``DimensionLimits`` is rejected
with ``JobRejected`` naming the limits, never silently shrunk: the kind 5100 page says a DVM
that cannot make the requested size should not serve the job.

With the default limits, the native budgets give (width x height)::

    ratio   sd15 (512)  sd2 (768)   sdxl / sd3 / flux / ... (1024)
    1:1     512x512     768x768     1024x1024
    4:3     576x448     896x640     1152x896 (sd3, flux: 1184x880)
    ...     see docs/job-requests.md for the full table

``Dimensions.width``/``height`` is what the pipeline is asked for; ``output_width``/
``output_height`` is what the customer receives. They differ when a ``size`` is not a
multiple of the family's step or when an upscale factor applies; the engine upscales and
then resizes to the output exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from nostr_imagegen.errors import ConfigError, JobRejected
from nostr_imagegen.imagejob.model import ImageJob, Ratio
from nostr_imagegen.nostr.event import Tag

__all__ = ["DimensionLimits", "Dimensions", "ModelFamily", "job_dimensions", "resolve_dimensions"]


class ModelFamily(StrEnum):
    """A diffusion model family: its native resolution and the step its sides must keep."""

    SD15 = "sd15"
    SD2 = "sd2"
    SDXL = "sdxl"
    SD3 = "sd3"
    FLUX = "flux"
    FLUX2 = "flux2"
    QWENIMAGE = "qwenimage"
    ZIMAGE = "zimage"
    SANA = "sana"
    CHROMA = "chroma"

    @property
    def native_size(self) -> int:
        """Side of the square the family was trained at: its pixel budget is this squared."""
        return _NATIVE_SIZE[self]

    @property
    def multiple(self) -> int:
        """Every generated side is a multiple of this.

        64 for the UNet families (SD 1.5, SD 2, SDXL): the VAE divides by 8 and the UNet halves
        the latent up to three times, so sides that are multiples of 64 never need padding or
        cropping between blocks (SDXL's own training buckets are multiples of 64).
        16 for the transformer families (SD 3, FLUX.1, FLUX.2, Qwen-Image, Z-Image, Chroma):
        the VAE divides by 8 and the transformer packs 2x2 latent patches, so 16 is the step
        their pipelines require. 32 for Sana: its AutoencoderDC divides by 32 and the
        transformer takes 1x1 patches.
        """
        return _MULTIPLE[self]


_NATIVE_SIZE = {
    ModelFamily.SD15: 512,
    ModelFamily.SD2: 768,
    ModelFamily.SDXL: 1024,
    ModelFamily.SD3: 1024,
    ModelFamily.FLUX: 1024,
    ModelFamily.FLUX2: 1024,
    # Qwen-Image was trained up to 1328x1328; 1024 keeps its default job within an engine's
    # default pixel limit (a model's native_size in the config may say 1328).
    ModelFamily.QWENIMAGE: 1024,
    ModelFamily.ZIMAGE: 1024,
    ModelFamily.SANA: 1024,
    ModelFamily.CHROMA: 1024,
}
_MULTIPLE = {
    ModelFamily.SD15: 64,
    ModelFamily.SD2: 64,
    ModelFamily.SDXL: 64,
    ModelFamily.SD3: 16,
    ModelFamily.FLUX: 16,
    ModelFamily.FLUX2: 16,
    ModelFamily.QWENIMAGE: 16,
    ModelFamily.ZIMAGE: 16,
    ModelFamily.SANA: 32,
    ModelFamily.CHROMA: 16,
}


@dataclass(frozen=True, slots=True)
class DimensionLimits:
    """What the operator serves. Defaults suit one consumer GPU serving SDXL-class models.

    ``min_side``/``max_side``: bounds on each side of a requested ``size`` and of the
    generated image. ``max_pixels``: bound on the generated image's area (memory and time
    grow with it). ``max_upscale``: the largest upscale factor. ``max_output_side``: bound on
    each side of the delivered image after upscaling.
    """

    min_side: int = 64
    max_side: int = 2048
    max_pixels: int = 2048 * 2048
    max_upscale: float = 4.0
    max_output_side: int = 8192

    def __post_init__(self) -> None:
        if not 1 <= self.min_side <= self.max_side:
            raise ConfigError(
                f"dimension limits need 1 <= min_side <= max_side, "
                f"got {self.min_side} and {self.max_side}"
            )
        if self.max_pixels < 1 or self.max_output_side < 1:
            raise ConfigError("dimension limits need positive max_pixels and max_output_side")
        if not (math.isfinite(self.max_upscale) and self.max_upscale >= 1.0):
            raise ConfigError(f"max_upscale must be at least 1, got {self.max_upscale}")


@dataclass(frozen=True, slots=True)
class Dimensions:
    """Generation size (``width`` x ``height``) and delivered size after ``upscale``."""

    width: int
    height: int
    upscale: float
    output_width: int
    output_height: int


def _half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _snap(value: float, multiple: int) -> int:
    """The nearest multiple of ``multiple`` (halves round up), at least one multiple."""
    return max(1, _half_up(value / multiple)) * multiple


def _format_factor(factor: float) -> str:
    return str(int(factor)) if factor.is_integer() else str(factor)


def resolve_dimensions(
    family: ModelFamily,
    *,
    ratio: Ratio | None = None,
    size: tuple[int, int] | None = None,
    upscale: float | None = None,
    native_size: int | None = None,
    limits: DimensionLimits = DimensionLimits(),
) -> Dimensions:
    """Map a ratio or size (``size`` wins) and an upscale factor to ``Dimensions``.

    ``native_size`` overrides the family's native side (tests use tiny models, native 64).
    Raises ``JobRejected`` carrying the ``param`` tag at fault when the result is beyond
    ``limits``; the tag is written in the one-value form (``["param", "size", "WxH"]``).
    """
    native = family.native_size if native_size is None else native_size
    if native < 1:
        raise ConfigError(f"native_size must be positive, got {native}")
    multiple = family.multiple
    tag: Tag | None = None
    if size is not None:
        want_w, want_h = size
        tag = ("param", "size", f"{want_w}x{want_h}")
        if not all(limits.min_side <= side <= limits.max_side for side in size):
            raise JobRejected(
                f"size {want_w}x{want_h} is not served here: each side must be from "
                f"{limits.min_side} to {limits.max_side} pixels",
                tag=tag,
            )
        width, height = _snap(want_w, multiple), _snap(want_h, multiple)
        # Rounding up to the step must not cross max_side when it is not a multiple itself.
        top = max(multiple, limits.max_side // multiple * multiple)
        width, height = min(width, top), min(height, top)
        base_w, base_h = want_w, want_h
    elif ratio is not None:
        tag = ("param", "ratio", ratio.value)
        parts_w, parts_h = ratio.parts
        scale = math.sqrt(parts_w / parts_h)
        exact_w, exact_h = native * scale, native / scale
        width, height = _snap(exact_w, multiple), _snap(exact_h, multiple)
        # Snapping both sides can round the area past max_pixels when the exact size (the
        # native square's area) fits: 16:10 at SDXL's 1024 snaps to 1280x832, over 1024^2.
        # A ratio the provider offers must not be refused for that: step the side rounded
        # up the most down by one multiple (at most twice) instead.
        while width * height > limits.max_pixels and exact_w * exact_h <= limits.max_pixels:
            if width - exact_w >= height - exact_h and width > multiple:
                width -= multiple
            elif height > multiple:
                height -= multiple
            else:
                break
        base_w, base_h = width, height
    else:
        width = height = _snap(native, multiple)
        base_w, base_h = width, height
    what = f"size {base_w}x{base_h}" if size is not None else f"{width}x{height}"
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise JobRejected(
            f"{what} (generated as {width}x{height}) is larger than this provider serves: "
            f"at most {limits.max_side} pixels a side and {limits.max_pixels} pixels in all",
            tag=tag,
        )
    factor = 1.0 if upscale is None else float(upscale)
    upscale_tag = ("param", "upscale", _format_factor(factor)) if math.isfinite(factor) else None
    if not (math.isfinite(factor) and 1.0 <= factor <= limits.max_upscale):
        raise JobRejected(
            f"upscale factor {factor} is not served here: use 1 (none) to "
            f"{_format_factor(limits.max_upscale)}",
            tag=upscale_tag,
        )
    out_w, out_h = _half_up(base_w * factor), _half_up(base_h * factor)
    if max(out_w, out_h) > limits.max_output_side:
        raise JobRejected(
            f"{base_w}x{base_h} upscaled {_format_factor(factor)}x is {out_w}x{out_h}, larger "
            f"than this provider delivers: at most {limits.max_output_side} pixels a side",
            tag=upscale_tag,
        )
    return Dimensions(
        width=width, height=height, upscale=factor, output_width=out_w, output_height=out_h
    )


def job_dimensions(
    job: ImageJob,
    family: ModelFamily,
    *,
    native_size: int | None = None,
    limits: DimensionLimits = DimensionLimits(),
    default_upscale: float | None = None,
) -> Dimensions:
    """``resolve_dimensions`` for a parsed job.

    ``default_upscale`` is the operator's factor for jobs that do not ask for one. It is a
    preference, not the customer's request, so it is lowered (never below 1) to what
    ``limits`` allow for this job instead of rejecting it; a factor the customer asked for is
    rejected when beyond the limits.
    """
    if job.upscale is not None or default_upscale is None:
        return resolve_dimensions(
            family,
            ratio=job.ratio,
            size=job.size,
            upscale=job.upscale,
            native_size=native_size,
            limits=limits,
        )
    plain = resolve_dimensions(
        family, ratio=job.ratio, size=job.size, native_size=native_size, limits=limits
    )
    room = limits.max_output_side / max(plain.output_width, plain.output_height)
    factor = min(float(default_upscale), limits.max_upscale, room)
    if not factor > 1.0:  # also catches NaN
        return plain
    return resolve_dimensions(
        family,
        ratio=job.ratio,
        size=job.size,
        upscale=factor,
        native_size=native_size,
        limits=limits,
    )
