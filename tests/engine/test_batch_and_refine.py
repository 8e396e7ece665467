"""Several images per job, and the refining upscale, on the tiny SD 1.5 model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _engine_support import MakeJob, TinyModels, tiny_config_data
from PIL import Image

from nostr_imagegen.engine.generate import Engine
from nostr_imagegen.engine.refine import has_img2img
from nostr_imagegen.engine_config import EngineConfig, ModelConfig
from nostr_imagegen.errors import ConfigError, JobRejected

pytestmark = pytest.mark.engine


def pixels(image: Image.Image) -> np.ndarray[Any, Any]:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def engine(tiny_models: TinyModels) -> Engine:
    data = tiny_config_data(tiny_models)
    data["models"]["tiny"]["max_images"] = 4
    data["models"]["tiny-refined"] = {
        **data["models"]["tiny"],
        "default": False,
        "refine": {"strength": 0.5, "steps": 4},
    }
    return Engine(EngineConfig.from_mapping(data))


def test_num_images_in_one_call_each_image_is_the_single_job_of_its_seed(
    engine: Engine, make_job: MakeJob
) -> None:
    calls: list[int] = []
    pipeline = engine.cache.get("tiny").text2img
    original_call = type(pipeline).__call__

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["num_images_per_prompt"])
        return original_call(self, *args, **kwargs)

    type(pipeline).__call__ = counting  # type: ignore[method-assign]
    try:
        result = engine.generate(make_job(("seed", "40"), ("num_images", "3")))
    finally:
        type(pipeline).__call__ = original_call  # type: ignore[method-assign]
    assert calls == [3]  # one pipeline call for the three
    assert len(result.images) == 3
    assert result.seeds == (40, 41, 42)
    assert result.metadata()["seeds"] == "40, 41, 42"
    for image, seed in zip(result.images, result.seeds, strict=True):
        single = engine.generate(make_job(("seed", str(seed)))).images[0]
        assert np.abs(pixels(image) - pixels(single)).max() <= 2  # batched kernels round
    # Three different pictures, not one repeated.
    assert not np.array_equal(pixels(result.images[0]), pixels(result.images[1]))


@pytest.mark.parametrize("value", ["5", "0", "two", "-1", "1.5"])
def test_num_images_beyond_the_maximum_or_not_a_count_is_refused(
    engine: Engine, make_job: MakeJob, value: str
) -> None:
    with pytest.raises(JobRejected) as refused:
        engine.plan(make_job(("num_images", value)))
    assert refused.value.tag == ("param", "num_images", value)
    assert "1 to 4" in str(refused.value)


def test_offered_models_say_how_many_images_a_job_may_ask_for(engine: Engine) -> None:
    offered = {model.name: model.max_images for model in engine.offered().models}
    assert offered["tiny"] == 4
    assert offered["tiny-xl"] == ModelConfig.model_fields["max_images"].default


def test_refined_upscale_has_the_size_and_is_not_a_plain_lanczos_upscale(
    engine: Engine, make_job: MakeJob
) -> None:
    plan = engine.plan(make_job(("upscale", "2"), model_name := ("model", "tiny-refined")))
    assert plan.refine is not None
    assert plan.refine.strength == 0.5
    refined = engine.generate(make_job(("seed", "11"), ("upscale", "2"), model_name))
    assert refined.images[0].size == (128, 128)
    base = engine.generate(make_job(("seed", "11"), model_name)).images[0]
    plain = base.resize((128, 128), Image.Resampling.LANCZOS)
    assert np.abs(pixels(refined.images[0]) - pixels(plain)).mean() > 1.0
    # A model without refine gives exactly the Lanczos upscale.
    unrefined = engine.generate(make_job(("seed", "11"), ("upscale", "2"))).images[0]
    assert np.array_equal(pixels(unrefined), pixels(plain))


def test_refine_pass_runs_for_every_image_of_a_batch(engine: Engine, make_job: MakeJob) -> None:
    result = engine.generate(
        make_job(("seed", "3"), ("upscale", "2"), ("num_images", "2"), ("model", "tiny-refined"))
    )
    assert [image.size for image in result.images] == [(128, 128), (128, 128)]
    assert not np.array_equal(pixels(result.images[0]), pixels(result.images[1]))


def test_a_size_beyond_the_native_budget_is_generated_at_it_and_refined(
    engine: Engine, make_job: MakeJob
) -> None:
    job = make_job(("size", "160x96"), ("model", "tiny-refined"))
    plan = engine.plan(job)
    assert plan.dimensions.width * plan.dimensions.height <= 64 * 64
    assert (plan.dimensions.output_width, plan.dimensions.output_height) == (160, 96)
    assert plan.refine is not None
    assert engine.generate(job).images[0].size == (160, 96)
    # Without refine the same size is generated directly.
    direct = engine.plan(make_job(("size", "160x96")))
    assert (direct.dimensions.width, direct.dimensions.height) == (192, 128)
    assert direct.refine is None


def test_refine_is_refused_for_a_model_without_img2img(
    tiny_models: TinyModels, make_job: MakeJob
) -> None:
    import diffusers

    class TextOnlyPipeline(diffusers.StableDiffusionPipeline):  # type: ignore[misc]
        """A text-to-image pipeline diffusers knows no img2img counterpart of."""

    def loader(model: ModelConfig, device: str, dtype: Any) -> Any:
        pipeline = TextOnlyPipeline.from_pretrained(model.source)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    data = tiny_config_data(tiny_models)
    data["models"]["tiny"]["refine"] = {"strength": 0.4}
    engine = Engine(EngineConfig.from_mapping(data), loader=loader)
    assert not has_img2img(engine.cache.get("tiny").text2img)
    assert has_img2img(diffusers.StableDiffusionPipeline.__new__(diffusers.StableDiffusionPipeline))
    with pytest.raises(JobRejected, match="needs an img2img pipeline") as refused:
        engine.generate(make_job(("upscale", "2")))
    assert refused.value.tag == ("param", "upscale", "2")
    assert engine.generate(make_job()).images[0].size == (64, 64)  # still serves the rest


def test_learned_refine_needs_a_learned_upscaler(tiny_models: TinyModels) -> None:
    data = tiny_config_data(tiny_models)
    data["models"]["tiny"]["refine"] = {"upscaler": "learned"}
    with pytest.raises(ConfigError, match='needs an \\[upscaler\\] of kind "spandrel"'):
        EngineConfig.from_mapping(data)


def test_progress_counts_the_refine_pass_after_the_generation(
    engine: Engine, make_job: MakeJob
) -> None:
    seen: list[tuple[int, int]] = []
    engine.generate(
        make_job(("upscale", "2"), ("model", "tiny-refined")),
        progress=lambda step, total: seen.append((step, total)),
    )
    # 2 generation steps, then int(4 * 0.5) = 2 refine steps, counted as one job of 4.
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_num_images_with_an_input_image(engine: Engine, make_job: MakeJob) -> None:
    source = Image.new("RGB", (64, 64), (200, 40, 90))
    job = make_job(("seed", "8"), ("num_images", "2"), image_url="https://example.com/in.png")
    result = engine.generate(job, init_image=source)
    assert [image.size for image in result.images] == [(64, 64), (64, 64)]
    assert result.seeds == (8, 9)
    single = engine.generate(
        make_job(("seed", "9"), image_url="https://example.com/in.png"), init_image=source
    ).images[0]
    assert np.abs(pixels(result.images[1]) - pixels(single)).max() <= 2


def test_a_refined_size_still_keeps_the_side_limits(engine: Engine, make_job: MakeJob) -> None:
    side = engine.config.limits.max_side + 64
    with pytest.raises(JobRejected, match="each side must be from") as refused:
        engine.plan(make_job(("size", f"{side}x64"), ("model", "tiny-refined")))
    assert refused.value.tag == ("param", "size", f"{side}x64")


def test_extra_images_are_priced_from_the_engines_plan(engine: Engine, make_job: MakeJob) -> None:
    # A priced DVM prices what the engine will run: three images cost two extra-image prices.
    from nostr_imagegen.service.payment.pricing import ConfigPricing
    from nostr_imagegen.service.payment.settings import PricingConfig

    pricing = ConfigPricing(
        PricingConfig(job_msats=1000, per_extra_image_msats=300),
        plan=engine.plan,
        default_steps={},
    )
    assert pricing(make_job(("num_images", "3"))) == 1000 + 2 * 300
    assert pricing(make_job()) == 1000
