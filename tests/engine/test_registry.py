"""The registry: request names -> configured models and LoRAs, refusals that list the offer."""

from __future__ import annotations

import pytest

from nostr_imagegen.engine.registry import Registry
from nostr_imagegen.engine_config import EngineConfig
from nostr_imagegen.errors import JobRejected
from nostr_imagegen.imagejob.dimensions import ModelFamily
from nostr_imagegen.imagejob.model import LoraRequest

CONFIG = EngineConfig.from_mapping(
    {
        "models": {
            "sd15": {"source": "x/sd15", "family": "sd15"},
            "turbo": {"source": "x/turbo", "family": "sdxl", "default": True},
        },
        "loras": {
            "pixel-art": {"source": "loras/pixel-art", "family": "sdxl", "weight": 0.8},
            "ink": {"source": "loras/ink", "family": "sdxl"},
            "old-film": {"source": "loras/old-film", "family": "sd15"},
        },
        "limits": {"max_loras": 2, "max_lora_weight": 1.5},
    }
)


@pytest.fixture
def registry() -> Registry:
    return Registry(CONFIG)


def test_default_and_named_models(registry: Registry) -> None:
    assert registry.resolve_model(None)[0] == "turbo"
    name, model = registry.resolve_model("sd15")
    assert (name, model.family) == ("sd15", ModelFamily.SD15)
    assert registry.model_names() == ["turbo", "sd15"]


def test_unknown_model_lists_the_offer(registry: Registry) -> None:
    with pytest.raises(JobRejected) as caught:
        registry.resolve_model("midjourney")
    assert caught.value.tag == ("param", "model", "midjourney")
    assert "choose one of turbo, sd15" in caught.value.reason


def test_loras_with_default_and_explicit_weights(registry: Registry) -> None:
    resolved = registry.resolve_loras(
        [LoraRequest(name="pixel-art"), LoraRequest(name="ink", weight=-0.5)], ModelFamily.SDXL
    )
    assert resolved == [("pixel-art", 0.8), ("ink", -0.5)]
    assert registry.resolve_loras([], ModelFamily.SD15) == []


def test_unknown_lora_lists_those_for_the_family(registry: Registry) -> None:
    with pytest.raises(JobRejected) as caught:
        registry.resolve_loras([LoraRequest(name="anime", weight=0.5)], ModelFamily.SDXL)
    assert caught.value.tag == ("param", "lora", "anime", "0.5")
    assert "choose from pixel-art, ink" in caught.value.reason
    assert "old-film" not in caught.value.reason


def test_lora_of_another_family(registry: Registry) -> None:
    with pytest.raises(JobRejected) as caught:
        registry.resolve_loras([LoraRequest(name="old-film")], ModelFamily.SDXL)
    assert caught.value.tag == ("param", "lora", "old-film")
    assert "is for sd15 models, not sdxl" in caught.value.reason
    assert "pixel-art, ink" in caught.value.reason


def test_family_without_loras_says_so() -> None:
    config = EngineConfig.from_mapping({"models": {"a": {"source": "x", "family": "sd2"}}})
    with pytest.raises(JobRejected, match="none are offered"):
        Registry(config).resolve_loras([LoraRequest(name="ink")], ModelFamily.SD2)


def test_too_many_loras(registry: Registry) -> None:
    requests = [LoraRequest(name=n) for n in ("pixel-art", "ink", "old-film")]
    with pytest.raises(JobRejected, match="at most 2 per job") as caught:
        registry.resolve_loras(requests, ModelFamily.SDXL)
    assert caught.value.tag == ("param", "lora", "old-film")


def test_same_lora_twice(registry: Registry) -> None:
    requests = [LoraRequest(name="ink"), LoraRequest(name="ink", weight=1.0)]
    with pytest.raises(JobRejected, match="twice"):
        registry.resolve_loras(requests, ModelFamily.SDXL)


@pytest.mark.parametrize("weight", [1.6, -1.51, float("nan"), float("inf")])
def test_weight_out_of_bounds(registry: Registry, weight: float) -> None:
    with pytest.raises(JobRejected, match=r"out of bounds; use -1\.5 to 1\.5"):
        registry.resolve_loras([LoraRequest(name="ink", weight=weight)], ModelFamily.SDXL)


def test_weight_on_the_bound_is_served(registry: Registry) -> None:
    assert registry.resolve_loras([LoraRequest(name="ink", weight=-1.5)], ModelFamily.SDXL) == [
        ("ink", -1.5)
    ]
