"""From ratio / size / upscale to generation and output pixels, per model family."""

from __future__ import annotations

import math

import pytest
from _request_support import prompt_request

from nostr_imagegen.errors import ConfigError, JobRejected
from nostr_imagegen.imagejob.dimensions import (
    DimensionLimits,
    Dimensions,
    ModelFamily,
    job_dimensions,
    resolve_dimensions,
)
from nostr_imagegen.imagejob.model import Ratio
from nostr_imagegen.imagejob.request import parse_image_job

FAMILIES = list(ModelFamily)


def test_family_native_sizes_and_steps() -> None:
    assert {f.value: (f.native_size, f.multiple) for f in ModelFamily} == {
        "sd15": (512, 64),
        "sd2": (768, 64),
        "sdxl": (1024, 64),
        "sd3": (1024, 16),
        "flux": (1024, 16),
        "flux2": (1024, 16),
        "qwenimage": (1024, 16),
        "zimage": (1024, 16),
        "sana": (1024, 32),
        "chroma": (1024, 16),
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_no_ratio_or_size_gives_the_native_square(family: ModelFamily) -> None:
    dims = resolve_dimensions(family)
    side = family.native_size
    assert dims == Dimensions(
        width=side, height=side, upscale=1.0, output_width=side, output_height=side
    )


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("ratio", list(Ratio))
def test_ratio_keeps_the_pixel_budget_at_that_aspect(family: ModelFamily, ratio: Ratio) -> None:
    dims = resolve_dimensions(family, ratio=ratio)
    step = family.multiple
    assert dims.width % step == 0
    assert dims.height % step == 0
    parts_w, parts_h = ratio.parts
    # Each side is the exact side rounded to the nearest step.
    exact_w = family.native_size * math.sqrt(parts_w / parts_h)
    exact_h = family.native_size * math.sqrt(parts_h / parts_w)
    assert abs(dims.width - exact_w) <= step / 2
    assert abs(dims.height - exact_h) <= step / 2
    # Landscape stays landscape, portrait stays portrait.
    assert (dims.width > dims.height) == (parts_w > parts_h)
    assert (dims.output_width, dims.output_height) == (dims.width, dims.height)


def test_sdxl_ratios_land_on_its_training_buckets() -> None:
    # SDXL was trained on these multiples of 64 near one megapixel.
    buckets = {
        Ratio.LANDSCAPE_4_3: (1152, 896),
        Ratio.LANDSCAPE_16_9: (1344, 768),
        Ratio.PORTRAIT_9_16: (768, 1344),
    }
    for ratio, size in buckets.items():
        dims = resolve_dimensions(ModelFamily.SDXL, ratio=ratio)
        assert (dims.width, dims.height) == size


def test_portrait_is_the_transpose_of_landscape() -> None:
    pairs = [
        (Ratio.LANDSCAPE_4_3, Ratio.PORTRAIT_3_4),
        (Ratio.LANDSCAPE_16_9, Ratio.PORTRAIT_9_16),
        (Ratio.LANDSCAPE_16_10, Ratio.PORTRAIT_10_16),
    ]
    for family in FAMILIES:
        for landscape, portrait in pairs:
            wide = resolve_dimensions(family, ratio=landscape)
            tall = resolve_dimensions(family, ratio=portrait)
            assert (wide.width, wide.height) == (tall.height, tall.width)


def test_native_size_override_for_tiny_models() -> None:
    assert resolve_dimensions(ModelFamily.SD15, native_size=64).width == 64
    dims = resolve_dimensions(ModelFamily.FLUX, ratio=Ratio.LANDSCAPE_16_9, native_size=64)
    assert (dims.width, dims.height) == (80, 48)


def test_native_size_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        resolve_dimensions(ModelFamily.SD15, native_size=0)


@pytest.mark.parametrize(
    ("family", "size", "generated"),
    [
        (ModelFamily.SD15, (512, 512), (512, 512)),
        (ModelFamily.SD15, (500, 530), (512, 512)),
        (ModelFamily.SD15, (64, 96), (64, 128)),  # halves round up
        (ModelFamily.SDXL, (1000, 750), (1024, 768)),
        (ModelFamily.FLUX, (1000, 750), (1008, 752)),
        (ModelFamily.SD3, (2048, 64), (2048, 64)),
    ],
)
def test_size_is_generated_at_the_nearest_step_and_delivered_exactly(
    family: ModelFamily, size: tuple[int, int], generated: tuple[int, int]
) -> None:
    dims = resolve_dimensions(family, size=size)
    assert (dims.width, dims.height) == generated
    assert (dims.output_width, dims.output_height) == size


def test_size_wins_over_ratio() -> None:
    dims = resolve_dimensions(ModelFamily.SDXL, ratio=Ratio.LANDSCAPE_16_9, size=(512, 512))
    assert (dims.width, dims.height) == (512, 512)


@pytest.mark.parametrize("size", [(63, 512), (512, 2049), (4096, 4096), (16384, 1)])
def test_size_beyond_the_limits_is_rejected_with_the_limits(size: tuple[int, int]) -> None:
    with pytest.raises(JobRejected) as info:
        resolve_dimensions(ModelFamily.SDXL, size=size)
    assert info.value.tag == ("param", "size", f"{size[0]}x{size[1]}")
    assert "64" in info.value.reason
    assert "2048" in info.value.reason


def test_size_over_the_pixel_budget_is_rejected() -> None:
    limits = DimensionLimits(max_pixels=1024 * 1024)
    assert resolve_dimensions(ModelFamily.SDXL, size=(1024, 1024), limits=limits).width == 1024
    with pytest.raises(JobRejected, match="1048576 pixels in all") as info:
        resolve_dimensions(ModelFamily.SDXL, size=(1024, 1088), limits=limits)
    assert info.value.tag == ("param", "size", "1024x1088")


def test_snapping_never_crosses_a_max_side_off_the_step() -> None:
    limits = DimensionLimits(max_side=1000)
    dims = resolve_dimensions(ModelFamily.SDXL, size=(1000, 1000), limits=limits)
    assert (dims.width, dims.height) == (960, 960)
    assert (dims.output_width, dims.output_height) == (1000, 1000)


def test_ratio_beyond_the_limits_is_rejected_not_shrunk() -> None:
    limits = DimensionLimits(max_side=1024)
    with pytest.raises(JobRejected) as info:
        resolve_dimensions(ModelFamily.SDXL, ratio=Ratio.LANDSCAPE_16_9, limits=limits)
    assert info.value.tag == ("param", "ratio", "16:9")
    assert "1344x768" in info.value.reason


@pytest.mark.parametrize(
    ("factor", "output"), [(1.0, (1152, 896)), (2.0, (2304, 1792)), (1.5, (1728, 1344))]
)
def test_upscale_multiplies_the_output(factor: float, output: tuple[int, int]) -> None:
    dims = resolve_dimensions(ModelFamily.SDXL, ratio=Ratio.LANDSCAPE_4_3, upscale=factor)
    assert (dims.width, dims.height) == (1152, 896)
    assert dims.upscale == factor
    assert (dims.output_width, dims.output_height) == output


def test_upscale_applies_to_the_requested_size() -> None:
    dims = resolve_dimensions(ModelFamily.SD15, size=(500, 300), upscale=2)
    assert (dims.width, dims.height) == (512, 320)
    assert (dims.output_width, dims.output_height) == (1000, 600)


@pytest.mark.parametrize("factor", [0.5, 0.0, 4.5, 8.0, math.inf, math.nan])
def test_upscale_beyond_the_limits_is_rejected(factor: float) -> None:
    with pytest.raises(JobRejected, match="upscale factor") as info:
        resolve_dimensions(ModelFamily.SD15, upscale=factor)
    assert "4" in info.value.reason
    if math.isfinite(factor):
        assert info.value.tag is not None
        assert info.value.tag[:2] == ("param", "upscale")


def test_upscaled_output_beyond_max_output_side_is_rejected() -> None:
    limits = DimensionLimits(max_output_side=3000)
    assert resolve_dimensions(ModelFamily.SDXL, upscale=2.5, limits=limits).output_width == 2560
    with pytest.raises(JobRejected, match="3000") as info:
        resolve_dimensions(ModelFamily.SDXL, size=(2048, 1024), upscale=2, limits=limits)
    assert info.value.tag == ("param", "upscale", "2")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_side": 0},
        {"min_side": 512, "max_side": 256},
        {"max_pixels": 0},
        {"max_output_side": 0},
        {"max_upscale": 0.5},
        {"max_upscale": math.nan},
    ],
)
def test_invalid_limits_are_a_config_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        DimensionLimits(**kwargs)  # type: ignore[arg-type]


# --- from a parsed job -----------------------------------------------------------------------


def test_job_dimensions_reads_ratio_size_and_upscale() -> None:
    job = parse_image_job(prompt_request(("param", "ratio", "16:9"), ("param", "upscale", "2x")))
    dims = job_dimensions(job, ModelFamily.SDXL)
    assert (dims.width, dims.height, dims.upscale) == (1344, 768, 2.0)
    assert (dims.output_width, dims.output_height) == (2688, 1536)

    job = parse_image_job(prompt_request(("param", "ratio", "16:9"), ("param", "size", "640x480")))
    dims = job_dimensions(job, ModelFamily.SD15)
    assert (dims.width, dims.height) == (640, 512)
    assert (dims.output_width, dims.output_height) == (640, 480)


def test_job_upscale_wins_over_the_operator_default() -> None:
    job = parse_image_job(prompt_request(("param", "upscale", "1")))
    assert job_dimensions(job, ModelFamily.SD15, default_upscale=2.0).upscale == 1.0


def test_operator_default_upscale_applies_and_is_lowered_to_fit() -> None:
    job = parse_image_job(prompt_request())
    assert job_dimensions(job, ModelFamily.SD15, default_upscale=2.0).output_width == 1024
    limits = DimensionLimits(max_output_side=1536)
    dims = job_dimensions(job, ModelFamily.SDXL, default_upscale=4.0, limits=limits)
    assert (dims.upscale, dims.output_width, dims.output_height) == (1.5, 1536, 1536)
    dims = job_dimensions(job, ModelFamily.SDXL, default_upscale=8.0)
    assert dims.upscale == DimensionLimits().max_upscale


def test_customer_upscale_beyond_limits_is_rejected_not_lowered() -> None:
    job = parse_image_job(prompt_request(("param", "upscale", "8")))
    with pytest.raises(JobRejected):
        job_dimensions(job, ModelFamily.SD15)


def test_job_dimensions_passes_native_size_and_limits() -> None:
    job = parse_image_job(prompt_request(("param", "size", "4096x4096")))
    with pytest.raises(JobRejected):
        job_dimensions(job, ModelFamily.SDXL)
    big = DimensionLimits(max_side=4096, max_pixels=4096 * 4096, max_output_side=4096)
    assert job_dimensions(job, ModelFamily.SDXL, limits=big).width == 4096
    tiny = parse_image_job(prompt_request())
    assert job_dimensions(tiny, ModelFamily.SD15, native_size=64).width == 64
