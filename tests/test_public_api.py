"""The public API: what `__all__` promises exists, and the pure layer stays light."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import nostr_imagegen

HEAVY = ("torch", "diffusers", "transformers", "websockets", "httpx", "peft")

PURE_NAMES = (
    "Event",
    "Keys",
    "parse_event",
    "sign_event",
    "parse_image_job",
    "resolve_dimensions",
    "build_result",
    "build_feedback",
    "build_handler_info",
    "decode_relay_message",
)


def _modules_loaded_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return list(json.loads(out.strip().splitlines()[-1]))


def test_import_is_light() -> None:
    loaded = _modules_loaded_after("import nostr_imagegen")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_pure_names_do_not_pull_heavy_dependencies() -> None:
    code = "import nostr_imagegen as n\n" + "\n".join(f"n.{name}" for name in PURE_NAMES)
    loaded = _modules_loaded_after(code)
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_all_lists_the_curated_api() -> None:
    assert len(nostr_imagegen.__all__) == len(set(nostr_imagegen.__all__))
    for name in PURE_NAMES:
        assert name in nostr_imagegen.__all__


@pytest.mark.parametrize("name", nostr_imagegen.__all__)
def test_every_public_name_resolves(name: str) -> None:
    home = nostr_imagegen._LAZY.get(name, "")
    if home.startswith("nostr_imagegen.engine."):
        pytest.importorskip("diffusers")
    if home.startswith("nostr_imagegen.service."):
        pytest.importorskip("websockets")
        pytest.importorskip("httpx")
    value = getattr(nostr_imagegen, name)
    assert value is not None
    if home:
        # The lazy map points at the module that really defines (or re-exports) the name.
        assert getattr(importlib.import_module(home), name) is value


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = nostr_imagegen.no_such_name  # type: ignore[attr-defined]
