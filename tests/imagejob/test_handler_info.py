"""NIP-89 handler information (kind 31990): tags, the content JSON, and what is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _answers_support import signed

from nostr_imagegen.errors import EventError
from nostr_imagegen.imagejob.results import build_handler_info
from nostr_imagegen.nostr.keys import Keys

ALL_RATIOS = ["1:1", "4:3", "16:9", "16:10", "3:4", "9:16", "10:16"]


def content_of(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("identifier", "ostrich-painter")
    kwargs.setdefault("name", "Ostrich Painter")
    kwargs.setdefault("about", "SDXL images from a prompt")
    data: dict[str, Any] = json.loads(build_handler_info(**kwargs).content)
    return data


def test_handler_info_wire_form() -> None:
    template = build_handler_info(
        identifier="ostrich-painter",
        name="Ostrich Painter",
        about="SDXL images from a prompt",
        picture="https://example.com/avatar.png",
        models=["sdxl-turbo", "sd15"],
        loras=["pixel-art"],
    )
    event = signed(template, Keys.generate())
    assert event.kind == 31990
    assert [list(tag) for tag in event.tags] == [["d", "ostrich-painter"], ["k", "5100"]]
    assert json.loads(event.content) == {
        "name": "Ostrich Painter",
        "about": "SDXL images from a prompt",
        "picture": "https://example.com/avatar.png",
        "image": "https://example.com/avatar.png",
        "encryptionSupported": True,
        "nip90Params": {
            "model": {"required": False, "values": ["sdxl-turbo", "sd15"]},
            "lora": {"required": False, "values": ["pixel-art"]},
            "ratio": {"required": False, "values": ALL_RATIOS},
            "size": {"required": False, "values": []},
            "negative_prompt": {"required": False, "values": []},
        },
    }


def test_one_k_tag_per_kind_without_duplicates() -> None:
    template = build_handler_info(
        identifier="x", name="n", about="a", kinds=(5100, 5000, 5999, 5100)
    )
    assert list(template.tags_named("k")) == [("k", "5100"), ("k", "5000"), ("k", "5999")]


@pytest.mark.parametrize("kind", [4999, 6000, 6100, 31990])
def test_only_request_kinds_are_announced(kind: int) -> None:
    with pytest.raises(EventError, match="not a NIP-90 job request kind"):
        build_handler_info(identifier="x", name="n", about="a", kinds=(5100, kind))


def test_no_models_or_loras_means_no_such_params() -> None:
    params = content_of()["nip90Params"]
    assert "model" not in params
    assert "lora" not in params
    assert "picture" not in content_of()


def test_ratios_can_be_narrowed_and_are_checked() -> None:
    assert content_of(ratios=["1:1", "16:9"])["nip90Params"]["ratio"]["values"] == ["1:1", "16:9"]
    assert "ratio" not in content_of(ratios=[])["nip90Params"]
    with pytest.raises(EventError, match="5:4"):
        content_of(ratios=["1:1", "5:4"])


def test_params_add_replace_and_withdraw_entries() -> None:
    params = content_of(
        params={
            "steps": [4, 8, 20],
            "size": None,
            "seed": {"required": False, "values": [], "note": "integer"},
        },
    )["nip90Params"]
    assert params["steps"] == {"required": False, "values": [4, 8, 20]}
    assert "size" not in params
    assert params["seed"] == {"required": False, "values": [], "note": "integer"}


def test_extra_fields_join_the_content_but_cannot_overwrite() -> None:
    data = content_of(extra={"lud16": "painter@example.com"}, encryption_supported=False)
    assert data["lud16"] == "painter@example.com"
    assert data["encryptionSupported"] is False
    with pytest.raises(EventError, match="name"):
        content_of(extra={"name": "other"})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"identifier": ""}, "identifier"),
        ({"identifier": "x" * 300}, "identifier"),
        ({"name": " "}, "name"),
        ({"about": ""}, "about"),
        ({"kinds": ()}, "at least one"),
        ({"picture": "javascript:alert(1)"}, "picture"),
        ({"models": "sdxl"}, "models"),
        ({"params": {"steps": 5}}, "steps"),
        ({"extra": {"when": object()}}, "JSON"),
        ({"extra": {"bad": float("nan")}}, "JSON"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(EventError, match=match):
        content_of(**kwargs)


def test_caller_mappings_are_not_mutated() -> None:
    params: dict[str, Any] = {"seed": {"required": False, "values": []}}
    extra = {"website": "https://example.com"}
    content_of(params=params, extra=extra)
    assert params == {"seed": {"required": False, "values": []}}
    assert extra == {"website": "https://example.com"}
