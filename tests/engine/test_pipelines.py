"""PipelineCache: real loaders, bounded by count and memory, loads once under concurrency."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _engine_support import TinyModels, tiny_config_data

from nostr_imagegen.engine.pipelines import PipelineCache, estimate_bytes, load_pipeline
from nostr_imagegen.engine_config import EngineConfig, ModelConfig
from nostr_imagegen.errors import EngineError
from nostr_imagegen.imagejob.dimensions import ModelFamily

pytestmark = pytest.mark.engine


def cache_for(models: TinyModels, **sections: Any) -> PipelineCache:
    import torch

    config = EngineConfig.from_mapping(tiny_config_data(models, **sections))
    return PipelineCache(config, "cpu", torch.float32)


def test_both_families_load_through_the_real_loaders(tiny_models: TinyModels) -> None:
    import torch

    cache = cache_for(tiny_models, cache={"max_models": 3})
    sd15 = cache.get("tiny")
    sdxl = cache.get("tiny-xl")
    single = cache.get("tiny-single")
    assert type(sd15.text2img).__name__ == "StableDiffusionPipeline"
    assert type(sdxl.text2img).__name__ == "StableDiffusionXLPipeline"
    assert type(single.text2img).__name__ == "StableDiffusionPipeline"
    assert sd15.text2img.vae_scale_factor == 8
    assert sd15.text2img.unet.dtype == torch.float32
    assert single.text2img.unet.config.block_out_channels == [32, 64]
    # img2img is a view over the same modules, not a second copy of the weights.
    img2img = sdxl.img2img()
    assert type(img2img).__name__ == "StableDiffusionXLImg2ImgPipeline"
    assert img2img.unet is sdxl.text2img.unet
    assert img2img.vae is sdxl.text2img.vae
    assert sdxl.img2img() is img2img
    assert sd15.size_bytes == estimate_bytes(sd15.text2img) > 0
    assert cache.loaded() == ["tiny", "tiny-xl", "tiny-single"]


def test_least_recently_used_goes_first(tiny_models: TinyModels) -> None:
    cache = cache_for(tiny_models)
    first = cache.get("tiny")
    cache.get("tiny-xl")
    assert cache.get("tiny") is first  # a hit refreshes it
    cache.get("tiny-single")
    assert cache.loaded() == ["tiny", "tiny-single"]


def test_eviction_with_one_model_frees_the_other(tiny_models: TinyModels) -> None:
    cache = cache_for(tiny_models, cache={"max_models": 1})
    first = cache.get("tiny")
    assert cache.loaded() == ["tiny"]
    second = cache.get("tiny-xl")
    assert cache.loaded() == ["tiny-xl"]
    assert first.text2img is None  # released, so its weights can be collected
    assert second.text2img is not None
    assert cache.loaded_bytes() == second.size_bytes
    reloaded = cache.get("tiny")
    assert reloaded is not first
    assert reloaded.text2img is not None
    assert cache.evict("tiny")
    assert not cache.evict("tiny")
    assert cache.loaded() == []


class FakePipeline:
    """Just enough of a pipeline for the cache: modules of a known size."""

    def __init__(self, megabytes: int) -> None:
        import torch

        self.components = {"unet": torch.nn.Linear(megabytes * 2**18, 1, bias=False)}


def test_memory_budget(tiny_models: TinyModels) -> None:
    import torch

    sizes = {"tiny": 3, "tiny-xl": 2, "tiny-single": 6}
    config = EngineConfig.from_mapping(
        tiny_config_data(tiny_models, cache={"max_models": 3, "max_memory_mb": 5})
    )

    def loader(model: ModelConfig, device: str, dtype: torch.dtype) -> Any:
        name = next(n for n, m in config.models.items() if m is model)
        return FakePipeline(sizes[name])

    cache = PipelineCache(config, "cpu", torch.float32, loader=loader)
    assert cache.get("tiny").size_bytes == 3 * 2**20
    cache.get("tiny-xl")
    assert cache.loaded() == ["tiny", "tiny-xl"]  # 5 MiB: fits
    cache.get("tiny")
    cache.get("tiny-single")  # 6 MiB alone is over budget: kept, the others go
    assert cache.loaded() == ["tiny-single"]
    cache.get("tiny-xl")
    assert cache.loaded() == ["tiny-xl"]


def test_concurrent_callers_load_once(tiny_models: TinyModels) -> None:
    import torch

    config = EngineConfig.from_mapping(tiny_config_data(tiny_models))
    calls: list[str] = []
    lock = threading.Lock()

    def slow_loader(model: ModelConfig, device: str, dtype: torch.dtype) -> Any:
        with lock:
            calls.append(model.source)
        time.sleep(0.2)  # a wide window for the other threads to arrive
        return load_pipeline(model, device, dtype)

    cache = PipelineCache(config, "cpu", torch.float32, loader=slow_loader)
    barrier = threading.Barrier(4)
    results: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(cache.get("tiny"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert calls == [str(tiny_models.sd15)]
    assert len(results) == 4
    assert all(entry is results[0] for entry in results)


def test_load_failure_is_an_engine_error_without_the_path(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    data = tiny_config_data(tiny_models)
    broken = tmp_path / "not-a-model"
    broken.mkdir()  # there (the configuration checks that), but no model_index.json in it
    data["models"]["broken"] = {"source": str(broken), "family": "sd15"}
    import torch

    cache = PipelineCache(EngineConfig.from_mapping(data), "cpu", torch.float32)
    with pytest.raises(EngineError, match="model 'broken' could not be loaded") as caught:
        cache.get("broken")
    assert str(tmp_path) not in str(caught.value)
    assert cache.loaded() == []
    assert cache.get("tiny").text2img is not None  # the cache still works


def test_lora_failure_leaves_no_adapter(tiny_models: TinyModels, tmp_path: Path) -> None:
    import torch

    data = tiny_config_data(tiny_models)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    data["loras"]["broken"] = {"source": str(broken), "family": "sd15"}
    cache = PipelineCache(EngineConfig.from_mapping(data), "cpu", torch.float32)
    entry = cache.get("tiny")
    with pytest.raises(EngineError, match="LoRA 'broken' could not be loaded"):
        cache.ensure_loras(entry, ["broken"])
    assert entry.loras == set()
    cache.ensure_loras(entry, ["noise-a", "noise-b"])
    cache.ensure_loras(entry, ["noise-a"])  # loaded once
    assert entry.loras == {"noise-a", "noise-b"}
    adapters = entry.text2img.get_list_adapters()
    assert sorted(adapters["unet"]) == ["noise-a", "noise-b"]


def test_tiny_builders(tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel

    from nostr_imagegen.testing import build_tiny_pipeline, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    ids = tokenizer("ab c").input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == "abc"
    wider = build_tiny_pipeline(tmp_path / "wider", ModelFamily.SD15, wider=True)
    unet = UNet2DConditionModel.from_pretrained(wider, subfolder="unet")  # type: ignore[no-untyped-call]
    assert unet.config.block_out_channels == [16, 32, 64, 64]
    assert unet.config.layers_per_block == 2
    with pytest.raises(ValueError, match="build_tiny_family builds every family"):
        build_tiny_pipeline(tmp_path / "flux", ModelFamily.FLUX)
