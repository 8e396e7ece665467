"""Samplers per job: the request's name, the operator's list, the swap and the restore."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from _engine_support import PROMPT, MakeJob, TinyModels, tiny_config_data
from PIL import Image

from nostr_imagegen.engine.generate import Engine
from nostr_imagegen.engine.samplers import build_scheduler, is_flow_matching, offered_samplers
from nostr_imagegen.engine_config import EngineConfig
from nostr_imagegen.errors import ConfigError, JobCancelled, JobRejected
from nostr_imagegen.sampler_names import (
    FLOW_SAMPLERS,
    NOISE_SAMPLERS,
    SAMPLER_NAMES,
    missing_packages,
)

pytestmark = [
    pytest.mark.engine,
    # diffusers' Karras sigma code hands torch tensors to numpy (its warning, not ours).
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning"),
]


def pixels(image: Image.Image) -> np.ndarray[Any, Any]:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def engine(tiny_models: TinyModels) -> Engine:
    data = tiny_config_data(tiny_models)
    data["models"]["tiny-limited"] = {
        **data["models"]["tiny"],
        "default": False,
        "samplers": ["euler_a", "ddim"],
        "default_sampler": "ddim",
    }
    return Engine(EngineConfig.from_mapping(data))


def by_hand(folder: Any, scheduler_name: str, seed: int, **keys: Any) -> Image.Image:
    """A fresh pipeline with ``Class.from_config(...)`` set by hand, outside the engine."""
    import diffusers
    import torch

    pipeline = diffusers.AutoPipelineForText2Image.from_pretrained(folder)
    pipeline.set_progress_bar_config(disable=True)
    scheduler_class = getattr(diffusers, scheduler_name)
    pipeline.scheduler = scheduler_class.from_config(pipeline.scheduler.config, **keys)
    image: Image.Image = pipeline(
        PROMPT,
        num_inference_steps=2,
        guidance_scale=5.0,
        width=64,
        height=64,
        generator=torch.Generator("cpu").manual_seed(seed),
    ).images[0]
    return image


@pytest.mark.parametrize(
    ("sampler", "scheduler", "keys"),
    [
        ("dpmpp_2m_karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
        ("euler_a", "EulerAncestralDiscreteScheduler", {}),
        ("dpmpp_2m_sde", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
        ("ddim", "DDIMScheduler", {}),
    ],
)
def test_a_sampler_draws_what_its_scheduler_set_by_hand_draws(
    engine: Engine,
    make_job: MakeJob,
    tiny_models: TinyModels,
    sampler: str,
    scheduler: str,
    keys: dict[str, Any],
) -> None:
    result = engine.generate(make_job(("seed", "5"), ("sampler", sampler)))
    assert result.sampler == sampler
    assert result.metadata()["sampler"] == sampler
    expected = by_hand(tiny_models.sd15, scheduler, 5, **keys)
    assert np.array_equal(pixels(result.images[0]), pixels(expected))


def test_the_model_keeps_its_own_scheduler_object_after_a_job(
    engine: Engine, make_job: MakeJob
) -> None:
    entry = engine.cache.get("tiny")
    original = entry.text2img.scheduler
    plain = engine.generate(make_job(("seed", "3"))).images[0]
    switched = engine.generate(make_job(("seed", "3"), ("sampler", "euler_a"))).images[0]
    assert entry.text2img.scheduler is original
    assert not np.array_equal(pixels(plain), pixels(switched))
    again = engine.generate(make_job(("seed", "3"))).images[0]
    assert np.array_equal(pixels(plain), pixels(again))


def test_the_scheduler_is_restored_after_a_cancelled_job(engine: Engine, make_job: MakeJob) -> None:
    entry = engine.cache.get("tiny")
    original = entry.text2img.scheduler
    cancel = threading.Event()

    def cancel_at_first_step(step: int, total: int) -> None:
        cancel.set()

    with pytest.raises(JobCancelled):
        engine.generate(
            make_job(("sampler", "dpmpp_2m")), progress=cancel_at_first_step, cancel=cancel
        )
    assert entry.text2img.scheduler is original


def test_unknown_and_unoffered_samplers_are_refused_with_the_list(
    engine: Engine, make_job: MakeJob
) -> None:
    with pytest.raises(JobRejected) as unknown:
        engine.plan(make_job(("sampler", "k_warp_drive")))
    assert "'k_warp_drive' is not a sampler" in str(unknown.value)
    assert ", ".join(offered_samplers(engine.config.models["tiny"])) in str(unknown.value)
    assert unknown.value.tag == ("param", "sampler", "k_warp_drive")
    with pytest.raises(JobRejected) as limited:
        engine.plan(make_job(("model", "tiny-limited"), ("sampler", "dpmpp_2m")))
    assert "is not offered for model 'tiny-limited'; choose one of euler_a, ddim" in str(
        limited.value
    )
    with pytest.raises(JobRejected, match="takes one name"):
        engine.plan(make_job(("sampler", "euler", "karras")))


def test_the_default_sampler_runs_when_the_job_names_none(
    engine: Engine, make_job: MakeJob, tiny_models: TinyModels
) -> None:
    plan = engine.plan(make_job(("model", "tiny-limited")))
    assert plan.sampler == "ddim"
    result = engine.generate(make_job(("model", "tiny-limited"), ("seed", "9")))
    expected = by_hand(tiny_models.sd15, "DDIMScheduler", 9)
    assert np.array_equal(pixels(result.images[0]), pixels(expected))


def test_offered_lists_each_models_samplers(engine: Engine) -> None:
    offered = {model.name: model for model in engine.offered().models}
    assert offered["tiny-limited"].samplers == ("euler_a", "ddim")
    everything = tuple(name for name in SAMPLER_NAMES if not missing_packages(name))
    assert offered["tiny"].samplers == everything


def test_configuration_refuses_unknown_samplers_and_a_default_outside_the_list(
    tiny_models: TinyModels,
) -> None:
    data = tiny_config_data(tiny_models)
    data["models"]["tiny"]["samplers"] = ["euler", "dpm_fast_typo"]
    with pytest.raises(
        ConfigError, match=r"models\.tiny\.samplers: unknown sampler 'dpm_fast_typo'"
    ):
        EngineConfig.from_mapping(data)
    data = tiny_config_data(tiny_models)
    data["models"]["tiny"].update(samplers=["euler"], default_sampler="ddim")
    with pytest.raises(ConfigError, match="default_sampler 'ddim' is not among"):
        EngineConfig.from_mapping(data)


def test_noise_schedule_samplers_keep_the_models_schedule() -> None:
    import diffusers

    original = diffusers.PNDMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
    )
    assert not is_flow_matching(original)
    karras = build_scheduler("dpmpp_2m_karras", original, model="m")
    plain = build_scheduler("dpmpp_2m", karras, model="m")
    assert type(plain).__name__ == "DPMSolverMultistepScheduler"
    assert plain.config.use_karras_sigmas is False  # switching back really is plain
    assert plain.config.beta_end == 0.012
    for name in NOISE_SAMPLERS:
        if missing_packages(name):
            continue  # lms needs scipy; test_a_sampler_needing_a_missing_package covers it
        scheduler = build_scheduler(name, original, model="m")
        scheduler.set_timesteps(4)
        assert len(scheduler.timesteps) >= 4


def test_flow_matching_models_get_the_flow_schedulers_the_way_flux_calls_them() -> None:
    import diffusers

    original = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)
    assert is_flow_matching(original)
    sigmas = np.linspace(1.0, 1 / 4, 4)
    for name in FLOW_SAMPLERS:
        scheduler = build_scheduler(name, original, model="flux")
        assert is_flow_matching(scheduler)
        # What FluxPipeline does: custom sigmas and a resolution-dependent shift.
        scheduler.set_timesteps(4, sigmas=sigmas, mu=0.8)
        assert len(scheduler.timesteps) == 4
    unipc = build_scheduler("unipc", original, model="flux")
    assert unipc.config.flow_shift == 3.0
    assert build_scheduler("euler_a", original, model="flux").config.stochastic_sampling
    with pytest.raises(JobRejected) as refused:
        build_scheduler("dpmpp_2m_karras", original, model="flux")
    assert "does not apply to model 'flux' (a flow-matching model); choose one of " + (
        ", ".join(FLOW_SAMPLERS)
    ) in str(refused.value)


def test_a_sampler_needing_a_missing_package_is_refused_at_start(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else real(name, *a)
    )
    data = tiny_config_data(tiny_models)
    data["models"]["tiny"]["samplers"] = ["euler", "lms"]
    with pytest.raises(ConfigError, match="sampler 'lms' needs the scipy package"):
        Engine(EngineConfig.from_mapping(data))
    assert "lms" not in offered_samplers(
        EngineConfig.from_mapping(tiny_config_data(tiny_models)).models["tiny"]
    )


def test_the_announcement_lists_samplers_and_image_counts_per_model(engine: Engine) -> None:
    import json

    from nostr_imagegen.service.announce import handler_info_template
    from nostr_imagegen.service.options import Announcement

    template = handler_info_template(
        Announcement(name="Test DVM", about="tiny pictures"), engine.offered(), [5100]
    )
    content = json.loads(template.content)
    limits = content["modelLimits"]
    assert limits["tiny-limited"] == {"samplers": ["euler_a", "ddim"], "max_images": 4}
    assert limits["tiny"]["samplers"] == list(offered_samplers(engine.config.models["tiny"]))
    params = content["nip90Params"]
    assert params["num_images"]["values"] == ["1", "2", "3", "4"]
    assert "dpmpp_2m_karras" in params["sampler"]["values"]


# Samplers on real flow-matching pipelines: tiny FLUX.1, SD3 and Z-Image loaded by the engine.
FLOW_FAMILIES = ("flux", "sd3", "zimage")


@pytest.fixture(scope="module")
def flow_engine(tmp_path_factory: pytest.TempPathFactory, torch_one_thread: None) -> Any:
    from nostr_imagegen.imagejob.dimensions import ModelFamily
    from nostr_imagegen.testing import build_tiny_family

    root = tmp_path_factory.mktemp("flow-samplers")
    models = {
        f"tiny-{name}": {
            "source": str(build_tiny_family(root / name, ModelFamily(name))),
            "family": name,
            "steps": 3,
            "guidance_scale": 3.0,
            "native_size": 64,
        }
        for name in FLOW_FAMILIES
    }
    engine = Engine(EngineConfig.from_mapping({"models": models, "device": "cpu"}))
    yield engine
    engine.close()


def flow_by_hand(
    engine: Engine, model: str, scheduler_name: str, seeds: list[int], **keys: Any
) -> list[Image.Image]:
    """A fresh pipeline of ``model`` with its scheduler set by hand as engine/samplers.py
    documents it: ``Class.from_config(original.config, **keys)``, its ``step`` drawing from
    the job's generators."""
    import functools
    import inspect

    import diffusers
    import torch

    from nostr_imagegen.engine.families import family_spec, pipeline_class

    config = engine.config.models[model]
    spec = family_spec(config.family)
    pipeline = pipeline_class(spec.text2img).from_pretrained(config.source)
    pipeline.set_progress_bar_config(disable=True)
    scheduler_class = getattr(diffusers, scheduler_name)
    pipeline.scheduler = scheduler_class.from_config(pipeline.scheduler.config, **keys)
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    if "generator" in inspect.signature(pipeline.scheduler.step).parameters:
        pipeline.scheduler.step = functools.partial(pipeline.scheduler.step, generator=generators)
    images: list[Image.Image] = pipeline(
        prompt=PROMPT,
        num_inference_steps=3,
        guidance_scale=3.0,
        width=64,
        height=64,
        num_images_per_prompt=len(seeds),
        generator=generators,
    ).images
    return images


@pytest.mark.parametrize(
    ("family", "sampler", "scheduler", "keys"),
    [
        ("flux", "euler_a", "FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}),
        (
            "flux",
            "unipc",
            "UniPCMultistepScheduler",
            {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": 1.0},
        ),
        (
            "sd3",
            "unipc",
            "UniPCMultistepScheduler",
            # SD3's shift (3.0) is carried over as the multistep solver's flow_shift.
            {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": 3.0},
        ),
        ("sd3", "euler_a", "FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}),
        ("zimage", "lcm", "FlowMatchLCMScheduler", {}),
    ],
)
def test_a_flow_sampler_draws_what_its_scheduler_set_by_hand_draws(
    flow_engine: Engine,
    make_job: MakeJob,
    family: str,
    sampler: str,
    scheduler: str,
    keys: dict[str, Any],
) -> None:
    model = f"tiny-{family}"
    entry = flow_engine.cache.get(model)
    original = entry.text2img.scheduler
    job = make_job(("model", model), ("size", "64x64"), ("seed", "5"), ("sampler", sampler))
    result = flow_engine.generate(job)
    assert result.sampler == sampler
    assert entry.text2img.scheduler is original  # restored after the job
    (expected,) = flow_by_hand(flow_engine, model, scheduler, [5], **keys)
    assert np.array_equal(pixels(result.images[0]), pixels(expected))
    plain = flow_engine.generate(make_job(("model", model), ("size", "64x64"), ("seed", "5")))
    assert not np.array_equal(pixels(plain.images[0]), pixels(result.images[0]))


def test_a_stochastic_flow_sampler_is_reproducible_from_the_seed(
    flow_engine: Engine, make_job: MakeJob
) -> None:
    # FluxPipeline calls scheduler.step without a generator: unless the engine binds the
    # job's, euler_a's noise comes from torch's global generator and a seed means nothing.
    import torch

    job = make_job(("model", "tiny-flux"), ("size", "64x64"), ("seed", "8"), ("sampler", "euler_a"))
    first = flow_engine.generate(job).images[0]
    torch.manual_seed(12345)  # another global state: must not matter
    second = flow_engine.generate(job).images[0]
    assert np.array_equal(pixels(first), pixels(second))


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_a_noise_schedule_sampler_is_refused_on_a_flow_model_with_the_list(
    flow_engine: Engine, make_job: MakeJob, family: str
) -> None:
    model = f"tiny-{family}"
    entry = flow_engine.cache.get(model)
    original = entry.text2img.scheduler
    with pytest.raises(JobRejected) as refused:
        flow_engine.generate(make_job(("model", model), ("sampler", "dpmpp_2m_karras")))
    message = str(refused.value)
    assert f"does not apply to model {model!r} (a flow-matching model)" in message
    assert f"choose one of {', '.join(FLOW_SAMPLERS)}" in message
    assert refused.value.tag == ("param", "sampler", "dpmpp_2m_karras")
    assert entry.text2img.scheduler is original


@pytest.mark.parametrize("sampler", [None, "euler_a"])
def test_several_images_on_a_flow_model_are_the_single_jobs_of_seed_plus_k(
    flow_engine: Engine, make_job: MakeJob, sampler: str | None
) -> None:
    extra = [("sampler", sampler)] if sampler else []
    params = [("model", "tiny-flux"), ("size", "64x64"), *extra]
    both = flow_engine.generate(make_job(*params, ("seed", "20"), ("num_images", "2")))
    assert len(both.images) == 2
    for k, image in enumerate(both.images):
        single = flow_engine.generate(make_job(*params, ("seed", str(20 + k)))).images[0]
        # A batch of two runs the same maths in other shapes: float rounding, no more.
        assert np.abs(pixels(image) - pixels(single)).max() <= 2
    assert not np.array_equal(pixels(both.images[0]), pixels(both.images[1]))
