"""Memory and speed options of a model, applied on load (those that run on a CPU), and the
refusals of those that need what this machine lacks."""

from __future__ import annotations

from typing import Any

import pytest
from _engine_support import MakeJob, TinyModels, tiny_config_data

from nostr_imagegen.engine.generate import Engine
from nostr_imagegen.engine.memory import check_memory_options
from nostr_imagegen.engine_config import EngineConfig
from nostr_imagegen.errors import ConfigError

pytestmark = pytest.mark.engine


def config_with(tiny_models: TinyModels, **options: Any) -> EngineConfig:
    data = tiny_config_data(tiny_models)
    data["models"]["tiny"].update(options)
    return EngineConfig.from_mapping(data)


def test_model_dtype_vae_modes_and_attention_are_applied_and_it_generates(
    tiny_models: TinyModels, make_job: MakeJob
) -> None:
    import torch
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    config = config_with(
        tiny_models,
        dtype="bfloat16",
        vae_tiling=True,
        vae_slicing=True,
        attention_backend="native",
    )
    engine = Engine(config)
    pipeline = engine.cache.get("tiny").text2img
    assert pipeline.unet.dtype == torch.bfloat16
    assert pipeline.vae.use_tiling
    assert pipeline.vae.use_slicing
    processors = set(map(type, pipeline.unet.attn_processors.values()))
    assert processors == {AttnProcessor2_0}
    assert engine.generate(make_job(("seed", "1"))).images[0].size == (64, 64)
    # The other models keep the engine's precision.
    assert engine.cache.get("tiny-xl").text2img.unet.dtype == torch.float32
    # And the attention backend really is set, not left as it was.
    pipeline.unet.set_attn_processor(AttnProcessor())
    assert set(map(type, pipeline.unet.attn_processors.values())) == {AttnProcessor}


def test_compile_wraps_the_denoiser_in_place_on_load(tiny_models: TinyModels) -> None:
    engine = Engine(config_with(tiny_models, compile=True))
    unet = engine.cache.get("tiny").text2img.unet
    # nn.Module.compile: the same module object, its forward compiled (lazily, on first call).
    assert unet._compiled_call_impl is not None
    assert engine.cache.get("tiny-xl").text2img.unet._compiled_call_impl is None


@pytest.mark.parametrize("offload", ["model", "sequential"])
def test_offload_is_refused_without_a_cuda_device(tiny_models: TinyModels, offload: str) -> None:
    with pytest.raises(ConfigError, match=f'offload = "{offload}" needs a CUDA device'):
        Engine(config_with(tiny_models, offload=offload))


def test_offload_and_quantization_values_are_validated(tiny_models: TinyModels) -> None:
    with pytest.raises(ConfigError, match=r"models\.tiny\.offload"):
        config_with(tiny_models, offload="disk")
    with pytest.raises(ConfigError, match=r"models\.tiny\.quantization"):
        config_with(tiny_models, quantization="int3")
    with pytest.raises(ConfigError, match='quantization = "gguf" and gguf_file go together'):
        config_with(tiny_models, quantization="gguf")


@pytest.mark.parametrize(
    ("quantization", "package"),
    [("bnb-4bit", "bitsandbytes"), ("bnb-8bit", "bitsandbytes"), ("torchao-int8", "torchao")],
)
def test_quantization_without_its_package_is_a_clear_error(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch, quantization: str, package: str
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a)
    )
    config = config_with(tiny_models, quantization=quantization)
    with pytest.raises(ConfigError) as refused:
        check_memory_options(config, "cuda")
    assert f"needs the {package} package, which is not installed" in str(refused.value)
    assert "models.tiny.quantization" in str(refused.value)


def test_gguf_is_for_the_transformer_families(
    tiny_models: TinyModels, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "gguf" else real(name, *a)
    )
    weights = tmp_path / "flux-q4.gguf"
    weights.write_bytes(b"GGUF")
    config = config_with(tiny_models, quantization="gguf", gguf_file=str(weights))
    with pytest.raises(ConfigError, match="GGUF transformers load for the families flux, sd3"):
        check_memory_options(config, "cuda")


def test_attention_backends_are_checked_per_kind_of_denoiser(tiny_models: TinyModels) -> None:
    with pytest.raises(ConfigError, match="sd15 models take native or xformers"):
        Engine(config_with(tiny_models, attention_backend="flash"))
    data = tiny_config_data(tiny_models)
    data["models"]["flux"] = {"source": "black-forest-labs/FLUX.1-dev", "family": "flux"}
    data["models"]["flux"]["attention_backend"] = "warp"
    with pytest.raises(ConfigError, match="'warp' is not a diffusers attention backend; use one"):
        check_memory_options(EngineConfig.from_mapping(data), "cpu")
    data["models"]["flux"]["attention_backend"] = "native"
    check_memory_options(EngineConfig.from_mapping(data), "cpu")  # a known backend passes
