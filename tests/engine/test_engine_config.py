"""Engine configuration: the TOML an operator writes, and the errors a mistake gets."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from nostr_imagegen.engine_config import EngineConfig, is_local_path, load_engine_config
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


def write_full(tmp_path: Path) -> Path:
    """FULL with its local sources present: absolute ones under ``tmp_path/srv``."""
    for folder in ("etc/models/sd15", "configs/sd15", "srv/models", "srv/loras"):
        (tmp_path / folder).mkdir(parents=True)
    for file in ("srv/models/dream.safetensors", "srv/loras/pixel.safetensors"):
        (tmp_path / file).write_bytes(b"")
    return write(tmp_path, FULL.replace('"/srv/', f'"{tmp_path}/srv/'))


def test_full_example_parses(tmp_path: Path) -> None:
    config = load_engine_config(write_full(tmp_path))
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
    config = load_engine_config(write_full(tmp_path))
    assert config.models["sd15"].source == str((tmp_path / "etc" / "models" / "sd15").resolve())
    single = config.models["dream.v8"]
    assert single.single_file
    assert single.single_file_config == str((tmp_path / "configs" / "sd15").resolve())
    # A hub id and absolute paths are left alone.
    assert config.models["sdxl-turbo"].source == "stabilityai/sdxl-turbo"
    assert config.loras["pixel-art"].source == f"{tmp_path}/srv/loras/pixel.safetensors"


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


def test_config_is_frozen_and_input_untouched(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    data: dict[str, Any] = {"models": {"a": {"source": "./m", "family": "sd15"}}}
    config = EngineConfig.from_mapping(data, source=tmp_path / "engine.toml")
    assert data == {"models": {"a": {"source": "./m", "family": "sd15"}}}
    assert config.models["a"].source == str((tmp_path / "m").resolve())
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
        # A trailing newline passed a ^...$ pattern with re.match once.
        ('device = "cpu\\n"\n[models.a]\nsource = "x"\nfamily = "sd15"\n', "device"),
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


# ----- local sources exist, hub ids are not looked up ----------------------------------------


@pytest.mark.parametrize(
    ("source", "local"),
    [
        ("/srv/models/sd15", True),
        ("~/models/sd15", True),
        ("./sd15", True),
        ("../models/sd15", True),
        ("C:\\models\\sd15", True),
        ("dreamshaper_8.safetensors", True),
        ("loras/pixel.ckpt", True),
        ("models/sd15/v2", True),
        ("stabilityai/sdxl-turbo", False),
        ("gpt2", False),
        ("https://huggingface.co/o/r/blob/main/model.safetensors", False),
        ("hf.co/o/r/model.safetensors", False),
    ],
)
def test_what_counts_as_a_local_path(source: str, local: bool) -> None:
    assert is_local_path(source) is local


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ('[models.dream]\nsource = "{missing}"\nfamily = "sd15"\n', "models.dream.source"),
        (
            '[models.dream]\nsource = "{missing}.safetensors"\nfamily = "sd15"\n',
            "models.dream.source",
        ),
        (
            '[models.dream]\nsource = "{present}.safetensors"\nfamily = "sd15"\n'
            'single_file_config = "{missing}"\n',
            "models.dream.single_file_config",
        ),
        (
            '[models.dream]\nsource = "{present}"\nfamily = "sd15"\n'
            '[loras.pixel]\nsource = "{missing}.safetensors"\nfamily = "sd15"\n',
            "loras.pixel.source",
        ),
        (
            '[models.dream]\nsource = "{present}"\nfamily = "sd15"\n'
            '[upscaler]\nkind = "spandrel"\nsource = "{missing}.pth"\n',
            "upscaler.source",
        ),
    ],
)
def test_a_missing_local_source_is_refused_at_load_naming_field_and_path(
    tmp_path: Path, section: str, field: str
) -> None:
    present = tmp_path / "present"
    present.mkdir()
    (tmp_path / "present.safetensors").write_bytes(b"")
    missing = tmp_path / "nowhere"
    path = write(tmp_path, section.format(missing=missing, present=present))
    with pytest.raises(ConfigError) as caught:
        load_engine_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {field}: local path {missing}")
    assert message.endswith("does not exist")


def test_a_relative_source_is_looked_for_beside_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[models.tiny]\nsource = "./tiny"\nfamily = "sd15"\n')
    with pytest.raises(ConfigError, match=r"models\.tiny\.source: local path .*etc/tiny does not"):
        load_engine_config(path)
    (tmp_path / "etc" / "tiny").mkdir()
    assert load_engine_config(path).models["tiny"].source == str(tmp_path / "etc" / "tiny")


def test_a_local_source_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    folder, file = tmp_path / "folder.safetensors", tmp_path / "file"
    folder.mkdir()
    file.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"models\.a\.source: local path .* is not a file"):
        EngineConfig.from_mapping({"models": {"a": {"source": str(folder), "family": "sd15"}}})
    with pytest.raises(ConfigError, match=r"models\.a\.source: local path .* is not a folder"):
        EngineConfig.from_mapping({"models": {"a": {"source": str(file), "family": "sd15"}}})


def test_a_hub_id_is_accepted_without_any_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("loading a configuration must not touch the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    config = EngineConfig.from_mapping(
        {
            "models": {"turbo": {"source": "stabilityai/sdxl-turbo", "family": "sdxl"}},
            "loras": {"pixel": {"source": "nerijs/pixel-art-xl", "family": "sdxl"}},
        }
    )
    assert config.models["turbo"].source == "stabilityai/sdxl-turbo"
    assert config.loras["pixel"].source == "nerijs/pixel-art-xl"
