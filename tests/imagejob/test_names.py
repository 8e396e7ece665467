"""One NAME rule: a name the engine configuration accepts is exactly one a request may ask for."""

from __future__ import annotations

import pytest
from _request_support import prompt_request
from hypothesis import given, settings
from hypothesis import strategies as st

from nostr_imagegen.engine_config import EngineConfig
from nostr_imagegen.errors import ConfigError, JobRejected
from nostr_imagegen.imagejob.model import NAME_PATTERN, is_valid_name
from nostr_imagegen.imagejob.request import parse_image_job


def engine_accepts(name: str) -> bool:
    # Hub ids: a local path would have to exist (a missing one is a ConfigError of its own).
    model = {"source": "example/model", "family": "sd15"}
    lora = {"source": "example/lora", "family": "sd15"}
    try:
        config = EngineConfig.from_mapping({"models": {name: model}, "loras": {name: lora}})
    except ConfigError:
        return False
    assert list(config.models) == [name]
    return True


def request_accepts(name: str) -> bool:
    outcomes = set()
    for key in ("model", "lora"):
        try:
            parse_image_job(prompt_request(("param", key, name)))
            outcomes.add(True)
        except JobRejected:
            outcomes.add(False)
    assert len(outcomes) == 1  # model and lora names follow the same rule
    return outcomes.pop()


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("sdxl-turbo", True),
        ("SD_1.5", True),
        ("flux.1-schnell", True),
        ("a.", True),
        ("x" * 64, True),
        ("sdxl\n", False),  # the engine configuration accepted this one before
        ("a..b", False),  # and this one, which requests were refused
        ("x" * 65, False),
        ("", False),
        (".hidden", False),
        ("-flag", False),
        ("../x", False),
        ("a/b", False),
        ("modèle", False),
        ("name with space", False),
    ],
)
def test_known_names_both_ways(name: str, valid: bool) -> None:
    assert is_valid_name(name) is valid
    assert engine_accepts(name) is valid
    assert request_accepts(name) is valid


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="aZ09._-/ \n\té", max_size=70) | st.sampled_from(["x" * 63, "x" * 64]))
def test_engine_and_request_agree_on_every_name(name: str) -> None:
    assert engine_accepts(name) is request_accepts(name) is is_valid_name(name)


def test_the_pattern_matches_whole_names_only() -> None:
    assert NAME_PATTERN.fullmatch("sdxl")
    assert not NAME_PATTERN.fullmatch("sdxl\n")
    assert not is_valid_name(None)
