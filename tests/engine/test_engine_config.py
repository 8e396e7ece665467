"""Engine configuration: the TOML an operator writes, and the errors a mistake gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nostr_imagegen.engine.config import EngineConfig, load_engine_config
from nostr_imagegen.errors import ConfigError
from nostr_imagegen.imagejob.dimensions import ModelFamily

FULL = """
device = "cpu"
dtype = "float32"

[models.sdxl-turbo]
source = "stabilityai/sdxl-turbo"
family = "sdxl"
default = true
steps = 4
guidance_scale = 0.0

[models.sd15]
source = "./models/sd15"
family = "sd15"
scheduler = "EulerAncestralDiscreteScheduler"

[models."dream.v8"]
source = "/srv/models/dream.safetensors"
family = "sd15"
single_file_config = "../configs/sd15"

[loras.pixel-art]
source = "/srv/loras/pixel.safetensors"
family = "sdxl"
weight = 0.8

[limits]
max_steps = 40
max_pixels = 1048576
max_upscale = 2.0
max_loras = 2
max_lora_weight = 1.5

[cache]
max_models = 1
max_memory_mb = 12000

[upscaler]
kind = "lanczos"
default_factor = 2.0

[output]
default_format = "webp"
embed_metadata = true
"""


def write(tmp_path: Path, text: str, name: str = "engine.toml") -> Path:
    path = tmp_path / "etc" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_full_example_parses(tmp_path: Path) -> None:
    config = load_engine_config(write(tmp_path, FULL))
    assert list(config.models) == ["sdxl-turbo", "sd15", "dream.v8"]
    turbo = config.models["sdxl-turbo"]
    assert turbo.family is ModelFamily.SDXL
    assert (turbo.steps, turbo.guidance_scale) == (4, 0.0)
    assert config.default_model == "sdxl-turbo"
    assert config.loras["pixel-art"].weight == 0.8
    assert config.limits.max_steps == 40
    assert config.limits.dimension_limits().max_upscale == 2.0
    assert config.cache.max_models == 1
    assert config.upscaler.default_factor == 2.0
    assert config.output.default_format == "webp"
    assert config.output.embed_metadata is True
    assert config.device == "cpu"


def test_relative_sources_resolve_against_the_config_file(tmp_path: Path) -> None:
    config = load_engine_config(write(tmp_path, FULL))
    assert config.models["sd15"].source == str((tmp_path / "etc" / "models" / "sd15").resolve())
    single = config.models["dream.v8"]
    assert single.single_file
    assert single.single_file_config == str((tmp_path / "configs" / "sd15").resolve())
    # A hub id and absolute paths are left alone.
    assert config.models["sdxl-turbo"].source == "stabilityai/sdxl-turbo"
    assert config.loras["pixel-art"].source == "/srv/loras/pixel.safetensors"


def test_first_model_is_default_when_none_is_marked() -> None:
    config = EngineConfig.from_mapping(
        {
            "models": {
                "b": {"source": "x/b", "family": "sd15"},
                "a": {"source": "x/a", "family": "sdxl"},
            }
        }
    )
    assert config.default_model == "b"
    assert config.loras == {}
    assert config.cache.max_models == 2
    assert config.upscaler.kind == "lanczos"
    assert config.output.default_format == "png"


def test_config_is_frozen_and_input_untouched() -> None:
    data: dict[str, Any] = {"models": {"a": {"source": "./m", "family": "sd15"}}}
    config = EngineConfig.from_mapping(data, source="/etc/nostr/engine.toml")
    assert data == {"models": {"a": {"source": "./m", "family": "sd15"}}}
    assert config.models["a"].source == str(Path("/etc/nostr/m").resolve())
    with pytest.raises(Exception, match="frozen"):
        config.models["a"].steps = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # An unknown key is an error, not silently ignored; the message names the field.
        (
            '[models.a]\nsource = "x/a"\nfamily = "sd15"\nstep = 4\n',
            r"engine\.toml: models\.a\.step: unknown key",
        ),
        ('[models.a]\nsource = "x/a"\nfamily = "sd15"\n[cahce]\nmax_models = 1\n', "cahce"),
        ('[models.a]\nsource = "x/a"\nfamily = "sd9"\n', r"models\.a\.family"),
        ('[models.a]\nfamily = "sd15"\n', r"models\.a\.source: required key is missing"),
        ("[limits]\nmax_steps = 10\n", r"models: required key is missing"),
        ("models = {}\n", r"models: at least one model must be configured"),
        (
            '[models.a]\nsource = "x"\nfamily = "sd15"\ndefault = true\n'
            '[models.b]\nsource = "y"\nfamily = "sd15"\ndefault = true\n',
            "more than one default model: a, b",
        ),
        ('[models."bad name"]\nsource = "x"\nfamily = "sd15"\n', "name 'bad name'"),
        ('[models.a]\nsource = "x"\nfamily = "sd15"\nscheduler = "Fast"\n', "unknown scheduler"),
        (
            '[models.a]\nsource = "x/folder"\nfamily = "sd15"\nsingle_file_config = "y"\n',
            "single_file_config is only for",
        ),
        (
            '[models.a]\nsource = "x"\nfamily = "sd15"\nsteps = 80\n',
            r"steps \(80\) is above limits.max_steps \(50\)",
        ),
        ('[models.a]\nsource = "x"\nfamily = "sd15"\n[upscaler]\nkind = "spandrel"\n', "source"),
        ('device = "tpu"\n[models.a]\nsource = "x"\nfamily = "sd15"\n', "device 'tpu'"),
        ('[models.a]\nsource = "x"\nfamily = "sd15"\n[cache]\nmax_models = 0\n', "max_models"),
        (
            '[models.a]\nsource = "x"\nfamily = "sd15"\n'
            '[loras.l]\nsource = "l"\nfamily = "sd15"\nweight = 3.0\n',
            "beyond limits.max_lora_weight",
        ),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_engine_config(path)
    assert str(path) in str(caught.value)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_engine_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_engine_config(write(tmp_path, "[models.a\n"))


def test_a_larger_configuration_can_extend_it() -> None:
    """The service configuration subclasses EngineConfig and adds its own fields."""

    class ServiceLike(EngineConfig):
        relays: tuple[str, ...] = ()

    config = ServiceLike.from_mapping(
        {"models": {"a": {"source": "x", "family": "sd15"}}, "relays": ["wss://r.example"]}
    )
    assert isinstance(config, ServiceLike)
    assert config.relays == ("wss://r.example",)
    with pytest.raises(ConfigError, match="relais: unknown key"):
        ServiceLike.from_mapping({"models": {"a": {"source": "x", "family": "sd15"}}, "relais": []})
