"""Engine.generate on tiny pipelines loaded through the real diffusers loaders."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from _engine_support import MakeJob, TinyModels, tiny_config_data
from PIL import Image

from nostr_imagegen.engine.generate import Engine, GenerationResult
from nostr_imagegen.engine_config import EngineConfig, ModelConfig, OutputConfig
from nostr_imagegen.errors import EngineError, JobCancelled, JobRejected
from nostr_imagegen.imagejob.dimensions import ModelFamily, job_dimensions
from nostr_imagegen.imagejob.model import Ratio

pytestmark = pytest.mark.engine


def pixels(image: Image.Image) -> np.ndarray[Any, Any]:
    return np.asarray(image, dtype=np.int16)


def differs(a: Image.Image, b: Image.Image) -> bool:
    """Clearly different pictures: tiny random LoRAs move pixels by tens of levels."""
    return bool(np.abs(pixels(a) - pixels(b)).mean() > 1.0)


@pytest.fixture(scope="module")
def engine(tiny_config: EngineConfig) -> Engine:
    """One engine for the module: state left behind by one test would show in the next."""
    return Engine(tiny_config)


def fresh_reference(folder: Any, prompt: str, seed: int, steps: int = 2) -> Image.Image:
    """What a freshly loaded pipeline draws, outside the engine."""
    import torch
    from diffusers import AutoPipelineForText2Image

    pipeline = AutoPipelineForText2Image.from_pretrained(folder)  # type: ignore[no-untyped-call]
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    image: Image.Image = pipeline(
        prompt,
        num_inference_steps=steps,
        guidance_scale=5.0,
        width=64,
        height=64,
        generator=generator,
    ).images[0]
    return image


def test_txt2img_result(engine: Engine, make_job: MakeJob) -> None:
    result = engine.generate(make_job(("seed", "7")))
    assert isinstance(result, GenerationResult)
    (image,) = result.images
    assert image.size == (64, 64)
    assert image.mode == "RGB"
    assert (result.seed, result.model, result.loras) == (7, "tiny", ())
    assert (result.width, result.height, result.output_width, result.output_height) == (
        64,
        64,
        64,
        64,
    )
    assert (result.steps, result.guidance_scale, result.strength) == (2, 5.0, None)
    assert result.elapsed > 0
    assert pixels(image).std() > 0  # not a blank picture
    assert result.metadata()["seed"] == "7"


def test_same_pixels_as_a_freshly_loaded_pipeline(
    engine: Engine, make_job: MakeJob, tiny_models: TinyModels
) -> None:
    result = engine.generate(make_job(("seed", "11")))
    reference = fresh_reference(tiny_models.sd15, make_job().prompt, 11)
    assert np.array_equal(pixels(result.images[0]), pixels(reference))


def test_seed_determinism_and_drawn_seed(engine: Engine, make_job: MakeJob) -> None:
    first = engine.generate(make_job(("seed", "3")))
    again = engine.generate(make_job(("seed", "3")))
    other = engine.generate(make_job(("seed", "4")))
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    assert differs(first.images[0], other.images[0])
    drawn = engine.generate(make_job())
    replay = engine.generate(make_job(("seed", str(drawn.seed))))
    assert np.array_equal(pixels(drawn.images[0]), pixels(replay.images[0]))


def test_negative_prompt_changes_the_picture(engine: Engine, make_job: MakeJob) -> None:
    plain = engine.generate(make_job(("seed", "5")))
    negative = engine.generate(make_job(("seed", "5"), ("negative_prompt", "blurry hands")))
    assert negative.negative_prompt == "blurry hands"
    assert differs(plain.images[0], negative.images[0])


def test_lora_on_then_back_to_base(
    engine: Engine, make_job: MakeJob, tiny_models: TinyModels
) -> None:
    base = engine.generate(make_job(("seed", "21")))
    with_lora = engine.generate(make_job(("seed", "21"), ("lora", "noise-a")))
    assert with_lora.loras == (("noise-a", 1.0),)
    assert differs(base.images[0], with_lora.images[0])
    after = engine.generate(make_job(("seed", "21")))
    reference = fresh_reference(tiny_models.sd15, make_job().prompt, 21)
    assert np.array_equal(pixels(after.images[0]), pixels(reference))
    assert np.array_equal(pixels(after.images[0]), pixels(base.images[0]))


def test_two_loras_mixed_with_weights(engine: Engine, make_job: MakeJob) -> None:
    seed = ("seed", "8")
    only_a = engine.generate(make_job(seed, ("lora", "noise-a")))
    only_b = engine.generate(make_job(seed, ("lora", "noise-b")))
    both = engine.generate(make_job(seed, ("lora", "noise-a", "0.5"), ("lora", "noise-b")))
    assert only_b.loras == (("noise-b", 0.7),)  # the configured default weight
    assert both.loras == (("noise-a", 0.5), ("noise-b", 0.7))
    assert differs(both.images[0], only_a.images[0])
    assert differs(both.images[0], only_b.images[0])
    # The same mix again gives the same picture: adapter weights do not leak between jobs.
    again = engine.generate(make_job(seed, ("lora", "noise-a", "0.5"), ("lora", "noise-b")))
    assert np.array_equal(pixels(both.images[0]), pixels(again.images[0]))


def test_unknown_model_and_lora_are_rejected_with_the_offer(
    engine: Engine, make_job: MakeJob
) -> None:
    with pytest.raises(JobRejected, match="tiny, tiny-xl, tiny-single") as caught:
        engine.generate(make_job(("model", "dall-e")))
    assert caught.value.tag == ("param", "model", "dall-e")
    with pytest.raises(JobRejected, match="choose from noise-a, noise-b") as caught:
        engine.generate(make_job(("lora", "anime")))
    assert caught.value.tag == ("param", "lora", "anime")
    with pytest.raises(JobRejected, match="is for sdxl models"):
        engine.generate(make_job(("lora", "noise-xl")))


def test_limits_reject_steps_and_guidance(tiny_models: TinyModels, make_job: MakeJob) -> None:
    config = EngineConfig.from_mapping(
        tiny_config_data(
            tiny_models, limits={"max_steps": 3, "max_guidance_scale": 9.0, "max_pixels": 64 * 128}
        )
    )
    engine = Engine(config)
    with pytest.raises(JobRejected, match="use 1 to 3") as caught:
        engine.plan(make_job(("steps", "4")))
    assert caught.value.tag == ("param", "steps", "4")
    with pytest.raises(JobRejected, match="use 0 to 9") as caught:
        engine.plan(make_job(("guidance_scale", "9.5")))
    assert caught.value.tag == ("param", "guidance_scale", "9.5")
    with pytest.raises(JobRejected, match="larger than this provider serves"):
        engine.plan(make_job(("size", "128x128")))
    assert engine.plan(make_job(("size", "128x64"))).dimensions.width == 128
    plan = engine.plan(make_job(("steps", "3"), ("guidance_scale", "9")))
    assert (plan.steps, plan.guidance_scale) == (3, 9.0)


def test_plan_refuses_an_output_type_it_cannot_write_without_loading_a_model(
    tiny_config: EngineConfig, make_job: MakeJob
) -> None:
    loaded: list[str] = []

    def loader(model: ModelConfig, device: str, dtype: Any) -> Any:
        loaded.append(model.source)
        raise AssertionError("a rejected job must not load a model")

    engine = Engine(tiny_config, loader=loader)
    gif = make_job(output="image/gif")
    with pytest.raises(JobRejected, match="'image/gif' is not supported; use one of") as caught:
        engine.plan(gif)
    assert caught.value.tag == ("output", "image/gif")
    with pytest.raises(JobRejected, match="image/gif"):
        engine.generate(gif)
    assert loaded == []
    assert engine.cache.loaded() == []
    # What it can write: the request's type (any spelling), else the configured default.
    assert engine.plan(make_job(output="image/JPG")).output == "image/jpeg"
    assert engine.plan(make_job()).output == "image/png"
    webp = tiny_config.model_copy(update={"output": OutputConfig(default_format="webp")})
    assert Engine(webp, loader=loader).plan(make_job()).output == "image/webp"


def test_plan_sizes_are_job_dimensions_under_the_engine_limits(
    tiny_models: TinyModels, make_job: MakeJob
) -> None:
    """One rule for sizes: the engine's [limits] are what job_dimensions applies."""
    config = EngineConfig.from_mapping(
        tiny_config_data(tiny_models, limits={"max_pixels": 128 * 128, "max_output_side": 200})
    )
    engine = Engine(config)
    limits = config.limits.dimension_limits()
    for params in [(), (("ratio", "16:9"),), (("size", "100x70"),), (("upscale", "2"),)]:
        job = make_job(*params)
        assert engine.plan(job).dimensions == job_dimensions(
            job, ModelFamily.SD15, native_size=64, limits=limits
        )
    for refused in [("size", "192x192"), ("upscale", "4")]:
        job = make_job(refused)
        with pytest.raises(JobRejected) as by_engine:
            engine.plan(job)
        with pytest.raises(JobRejected) as by_function:
            job_dimensions(job, ModelFamily.SD15, native_size=64, limits=limits)
        assert str(by_engine.value) == str(by_function.value)


def test_sdxl_family(engine: Engine, make_job: MakeJob) -> None:
    result = engine.generate(make_job(("model", "tiny-xl"), ("seed", "1"), ("ratio", "16:9")))
    assert result.model == "tiny-xl"
    assert engine.plan(make_job(("model", "tiny-xl"))).family is ModelFamily.SDXL
    # 16:9 at a native side of 64, snapped to the SDXL step of 64 pixels.
    assert result.images[0].size == (result.output_width, result.output_height)
    with_lora = engine.generate(
        make_job(("model", "tiny-xl"), ("seed", "1"), ("ratio", "16:9"), ("lora", "noise-xl"))
    )
    assert differs(result.images[0], with_lora.images[0])
    after = engine.generate(make_job(("model", "tiny-xl"), ("seed", "1"), ("ratio", "16:9")))
    assert np.array_equal(pixels(after.images[0]), pixels(result.images[0]))


@pytest.mark.parametrize(("factor", "side"), [("2", 128), ("4", 256)])
def test_upscaling(engine: Engine, make_job: MakeJob, factor: str, side: int) -> None:
    result = engine.generate(make_job(("seed", "2"), ("upscale", factor)))
    assert (result.width, result.height) == (64, 64)
    assert result.images[0].size == (side, side)
    assert (result.output_width, result.output_height) == (side, side)


def test_size_not_a_multiple_is_delivered_exactly(engine: Engine, make_job: MakeJob) -> None:
    result = engine.generate(make_job(("seed", "2"), ("size", "100x70")))
    assert (result.width, result.height) == (128, 64)
    assert result.images[0].size == (100, 70)
    doubled = engine.generate(make_job(("seed", "2"), ("size", "100x70"), ("upscale", "2")))
    assert doubled.images[0].size == (200, 140)


def test_img2img(engine: Engine, make_job: MakeJob, tiny_models: TinyModels) -> None:
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8), mode="RGB")
    before = source.tobytes()
    job = make_job(("seed", "9"), ("strength", "0.5"), image_url="https://example.com/in.png")
    steps: list[tuple[int, int]] = []
    result = engine.generate(
        job, init_image=source, progress=lambda step, total: steps.append((step, total))
    )
    assert source.tobytes() == before
    assert source.size == (80, 96)
    assert result.images[0].size == (64, 64)
    assert result.strength == 0.5
    # 2 steps at strength 0.5 is one step: the model default was raised to make room.
    assert result.steps == 2
    assert steps == [(1, 1)]
    again = engine.generate(job, init_image=source)
    assert np.array_equal(pixels(result.images[0]), pixels(again.images[0]))
    stronger = engine.generate(
        make_job(("seed", "9"), ("strength", "1.0"), image_url="https://example.com/in.png"),
        init_image=source,
    )
    assert differs(result.images[0], stronger.images[0])
    other_input = engine.generate(job, init_image=source.transpose(Image.Transpose.ROTATE_180))
    assert differs(result.images[0], other_input.images[0])
    # LoRAs work on the img2img view too (it shares the UNet), and are off again afterwards.
    lora_job = make_job(
        ("seed", "9"), ("strength", "0.5"), ("lora", "noise-a"), image_url=job.image_url or ""
    )
    assert differs(engine.generate(lora_job, init_image=source).images[0], result.images[0])
    again = engine.generate(job, init_image=source)
    assert np.array_equal(pixels(result.images[0]), pixels(again.images[0]))
    # img2img shares the scheduler with text-to-image: nothing of it may leak into the next job.
    after = engine.generate(make_job(("seed", "11")))
    reference = fresh_reference(tiny_models.sd15, make_job().prompt, 11)
    assert np.array_equal(pixels(after.images[0]), pixels(reference))


def test_img2img_needs_the_image(engine: Engine, make_job: MakeJob) -> None:
    with pytest.raises(EngineError, match="init_image"):
        engine.generate(make_job(image_url="https://example.com/in.png"))
    with pytest.raises(JobRejected, match="leave no step") as caught:
        engine.plan(make_job(("steps", "1"), ("strength", "0.5"), image_url="https://e.com/a"))
    assert caught.value.tag == ("param", "steps", "1")


def test_progress_counts_every_step(engine: Engine, make_job: MakeJob) -> None:
    seen: list[tuple[int, int]] = []
    engine.generate(
        make_job(("steps", "3")), progress=lambda step, total: seen.append((step, total))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_cancel_between_steps_leaves_the_engine_usable(
    engine: Engine, make_job: MakeJob, tiny_models: TinyModels
) -> None:
    cancel = threading.Event()
    seen: list[int] = []

    def progress(step: int, total: int) -> None:
        seen.append(step)
        cancel.set()  # the customer cancels while step 1 runs

    with pytest.raises(JobCancelled):
        engine.generate(
            make_job(("steps", "4"), ("lora", "noise-a")), progress=progress, cancel=cancel
        )
    assert seen == [1]
    with pytest.raises(JobCancelled):
        engine.generate(make_job(), cancel=cancel)  # already set: nothing runs
    # LoRA disabled again after the cancelled job, and the next job runs normally.
    after = engine.generate(make_job(("seed", "21")))
    reference = fresh_reference(tiny_models.sd15, make_job().prompt, 21)
    assert np.array_equal(pixels(after.images[0]), pixels(reference))


def test_single_file_checkpoint_draws_like_the_folder(engine: Engine, make_job: MakeJob) -> None:
    folder = engine.generate(make_job(("seed", "13")))
    single = engine.generate(make_job(("seed", "13"), ("model", "tiny-single")))
    assert single.model == "tiny-single"
    assert np.array_equal(pixels(folder.images[0]), pixels(single.images[0]))


def test_sdxl_single_file_checkpoint_draws_like_the_folder(
    engine: Engine, tiny_models: TinyModels, tmp_path: Any, make_job: MakeJob
) -> None:
    from nostr_imagegen.testing import save_single_file_checkpoint

    # Both text encoders (``conditioner.embedders.0/1``) go through the file: a wrong or
    # missing one changes the prompt embedding and so the pixels.
    checkpoint = save_single_file_checkpoint(tiny_models.sdxl, tmp_path / "xl.safetensors")
    model = {
        "source": str(checkpoint),
        "family": "sdxl",
        "single_file_config": str(tiny_models.sdxl),
        "steps": 2,
        "guidance_scale": 5.0,
        "native_size": 64,
    }
    single = Engine(EngineConfig.from_mapping({"models": {"xl": model}, "device": "cpu"}))
    try:
        params = [("ratio", "16:9"), ("seed", "13")]
        got = single.generate(make_job(("model", "xl"), *params))
        want = engine.generate(make_job(("model", "tiny-xl"), *params))
        assert got.images[0].size == want.images[0].size
        assert np.array_equal(pixels(got.images[0]), pixels(want.images[0]))
    finally:
        single.close()


def test_pipeline_failure_is_an_engine_error_and_engine_survives(
    tiny_config: EngineConfig, make_job: MakeJob
) -> None:
    import torch

    from nostr_imagegen.engine.pipelines import PipelineLoader, load_pipeline

    class Exploding:
        def __init__(self, real: Any, error: BaseException) -> None:
            self.real, self.error, self.calls = real, error, 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def __call__(self, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == 1:
                raise self.error
            return self.real(**kwargs)

    def exploding_loader(error: BaseException) -> PipelineLoader:
        def load(model: ModelConfig, device: str, dtype: torch.dtype) -> Any:
            return Exploding(load_pipeline(model, device, dtype), error)

        return load

    for error, message in [
        (torch.OutOfMemoryError("CUDA out of memory"), "out of memory generating 64x64"),
        (RuntimeError("shapes do not match"), "image generation failed"),
    ]:
        engine = Engine(tiny_config, loader=exploding_loader(error))
        with pytest.raises(EngineError, match=message):
            engine.generate(make_job(("seed", "1")))
        assert engine.generate(make_job(("seed", "1"))).images[0].size == (64, 64)


def test_offered_and_warm(tiny_config: EngineConfig) -> None:
    engine = Engine(tiny_config)
    offer = engine.offered()
    assert offer.model_names == ["tiny", "tiny-xl", "tiny-single"]
    assert [m.default for m in offer.models] == [True, False, False]
    assert offer.lora_names == ["noise-a", "noise-b", "noise-xl"]
    assert offer.ratios == tuple(Ratio)
    assert offer.limits == tiny_config.limits
    assert engine.cache.loaded() == []
    engine.warm()
    assert engine.cache.loaded() == ["tiny"]
    engine.warm("tiny-xl")
    assert engine.cache.loaded() == ["tiny", "tiny-xl"]
    engine.close()
    assert engine.cache.loaded() == []
