"""LoRA switching between jobs: the engine's direct switch draws what diffusers' own
``enable_lora`` + ``set_adapters`` / ``disable_lora`` draw, and leaves the same layer state."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _engine_support import PROMPT, MakeJob, TinyModels, tiny_config_data
from PIL import Image

from nostr_imagegen.engine import pipelines
from nostr_imagegen.engine.generate import Engine
from nostr_imagegen.engine_config import EngineConfig
from nostr_imagegen.errors import EngineError

pytestmark = pytest.mark.engine

Loras = Sequence[tuple[str, float]]

A: Loras = [("noise-a", 1.0)]
B: Loras = [("noise-b", 0.7)]
MIX: Loras = [("noise-a", 0.5), ("noise-b", 0.7)]
NONE: Loras = []
#: Every kind of change from one job to the next: one LoRA to another, one to two, two to
#: none, none to two, two to one.
CASES: list[Loras] = [A, B, MIX, NONE, MIX, A, NONE]
SEED = 8


def pixels(image: Image.Image) -> np.ndarray[Any, Any]:
    return np.asarray(image, dtype=np.int16)


def lora_params(loras: Loras) -> list[tuple[str, ...]]:
    return [("lora", name, f"{weight:g}") for name, weight in loras]


@pytest.fixture(scope="module")
def lora_te(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA on the UNet and the text encoder with lora_alpha != r (scale 2 * weight), so
    both components and the alpha/r scaling are compared too."""
    from nostr_imagegen.testing import build_tiny_lora

    folder = tmp_path_factory.mktemp("lora-te")
    return build_tiny_lora(folder, tiny_models.sd15, seed=5, rank=2, alpha=4, text_encoder=True)


@pytest.fixture(scope="module")
def config(tiny_models: TinyModels, lora_te: Path) -> EngineConfig:
    data = tiny_config_data(tiny_models)
    data["loras"]["noise-te"] = {"source": str(lora_te), "family": "sd15"}
    return EngineConfig.from_mapping(data)


def reference_pipeline(config: EngineConfig, names: Sequence[str]) -> Any:
    """A freshly loaded pipeline with ``names`` loaded as adapters, outside the engine."""
    diffusers: Any = importlib.import_module("diffusers")
    pipeline = diffusers.AutoPipelineForText2Image.from_pretrained(config.models["tiny"].source)
    pipeline.set_progress_bar_config(disable=True)
    with warnings.catch_warnings():  # peft's note on a second adapter: intended here
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        for name in names:
            pipeline.load_lora_weights(config.loras[name].source, adapter_name=name)
    return pipeline


def diffusers_switch(pipeline: Any, loras: Loras) -> None:
    if loras:
        pipeline.enable_lora()
        pipeline.set_adapters(
            [name for name, _ in loras], adapter_weights=[weight for _, weight in loras]
        )
    else:
        pipeline.disable_lora()


def draw(pipeline: Any, seed: int = SEED) -> Image.Image:
    import torch

    image: Image.Image = pipeline(
        PROMPT,
        num_inference_steps=2,
        guidance_scale=5.0,
        width=64,
        height=64,
        generator=torch.Generator("cpu").manual_seed(seed),
    ).images[0]
    return image


def test_switching_draws_what_diffusers_draws(config: EngineConfig, make_job: MakeJob) -> None:
    engine = Engine(config)
    drawn = [
        engine.generate(make_job(("seed", str(SEED)), *lora_params(loras))).images[0]
        for loras in CASES
    ]
    reference = reference_pipeline(config, ["noise-a", "noise-b"])
    expected = []
    for loras in CASES:
        diffusers_switch(reference, loras)
        expected.append(draw(reference))
    for loras, image, wanted in zip(CASES, drawn, expected, strict=True):
        assert np.array_equal(pixels(image), pixels(wanted)), loras
    # The cases really differ: a switch that did nothing could not pass.
    assert len({pixels(image).tobytes() for image in drawn}) == 4


def test_text_encoder_lora_and_alpha_scaling(config: EngineConfig, make_job: MakeJob) -> None:
    engine = Engine(config)
    cases: list[Loras] = [[("noise-te", 0.6)], [("noise-te", 0.6), ("noise-a", 1.0)], NONE]
    drawn = [
        engine.generate(make_job(("seed", str(SEED)), *lora_params(loras))).images[0]
        for loras in cases
    ]
    reference = reference_pipeline(config, ["noise-te", "noise-a"])
    for loras, image in zip(cases, drawn, strict=True):
        diffusers_switch(reference, loras)
        assert np.array_equal(pixels(image), pixels(draw(reference))), loras
    assert len({pixels(image).tobytes() for image in drawn}) == 3


def layer_state(pipeline: Any) -> dict[str, tuple[bool, tuple[str, ...], dict[str, float]]]:
    """What a LoRA forward pass reads, per LoRA layer: disabled?, active adapters, scales."""
    tuner_layer = importlib.import_module("peft.tuners.tuners_utils").BaseTunerLayer
    modules: list[tuple[str, Any]] = [
        (f"{component}.{name}", module)
        for component in ("unet", "text_encoder")
        for name, module in getattr(pipeline, component).named_modules()
        if isinstance(module, tuner_layer)
    ]
    return {
        name: (bool(module.disable_adapters), tuple(module.active_adapters), dict(module.scaling))
        for name, module in modules
    }


def test_layer_state_matches_diffusers(config: EngineConfig) -> None:
    import torch

    cache = pipelines.PipelineCache(config, "cpu", torch.float32)
    entry = cache.get("tiny")
    cache.ensure_loras(entry, ["noise-te", "noise-a", "noise-b"])
    reference = reference_pipeline(config, ["noise-te", "noise-a", "noise-b"])
    for loras in [MIX, [("noise-te", 0.25)], A]:
        entry.activate_loras(loras)
        diffusers_switch(reference, loras)
        ours, theirs = layer_state(entry.text2img), layer_state(reference)
        # UNet and text encoder layers both compared
        assert {key.split(".")[0] for key in ours} == {"unet", "text_encoder"}
        assert ours == theirs
        entry.activate_loras([])
        assert all(disabled for disabled, _, _ in layer_state(entry.text2img).values())
    # LoRA weights stay frozen: switching never turns gradients on.
    assert not any(
        p.requires_grad for n, p in entry.text2img.unet.named_parameters() if "lora" in n
    )
    with pytest.raises(EngineError, match="'noise-xl' is not loaded"):
        entry.activate_loras([("noise-xl", 1.0)])


def test_diffusers_fallback_draws_the_same(
    config: EngineConfig, make_job: MakeJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    """peft layers without the expected attributes: switched through diffusers instead."""
    job = make_job(("seed", str(SEED)), *lora_params(MIX))
    fast = Engine(config).generate(job).images[0]
    monkeypatch.setattr(pipelines, "_switchable", lambda layer: False)
    slow_engine = Engine(config)
    slow = slow_engine.generate(job).images[0]
    assert slow_engine.cache.get("tiny")._lora_layers is None
    assert np.array_equal(pixels(fast), pixels(slow))
    base = slow_engine.generate(make_job(("seed", str(SEED)))).images[0]
    assert np.array_equal(pixels(base), pixels(draw(reference_pipeline(config, []))))


def test_a_switch_failing_half_way_is_reset(
    config: EngineConfig, make_job: MakeJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine(config)
    engine.generate(make_job(("lora", "noise-a")))  # loads the adapter
    entry = engine.cache.get("tiny")
    real = entry.activate_loras

    def half_way(loras: Loras) -> None:
        real(loras)
        if loras:
            raise RuntimeError("set_scale exploded")

    monkeypatch.setattr(entry, "activate_loras", half_way)
    with pytest.raises(EngineError, match="image generation failed"):
        engine.generate(make_job(("seed", str(SEED)), ("lora", "noise-a")))
    after = engine.generate(make_job(("seed", str(SEED)))).images[0]
    assert np.array_equal(pixels(after), pixels(draw(reference_pipeline(config, []))))


def test_loading_warns_neither_about_peft_config_nor_torch_dtype(config: EngineConfig) -> None:
    import torch

    cache = pipelines.PipelineCache(config, "cpu", torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        entry = cache.get("tiny")
        cache.ensure_loras(entry, ["noise-a", "noise-b"])
        cache.ensure_loras(entry, ["noise-te"])
        # The filter was local to the load: the caller's warning settings are unchanged.
        assert warnings.filters == before
    messages = [str(warning.message) for warning in caught]
    assert not [m for m in messages if "peft_config" in m or "torch_dtype" in m], messages
