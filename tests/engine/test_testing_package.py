"""``nostr_imagegen.testing``: the tiny offline builders, kept out of the library's import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _engine_support import TinyModels

import nostr_imagegen.testing as testing


def _modules_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_the_library_import_leaves_it_out_and_it_imports_no_torch() -> None:
    loaded = _modules_after("import nostr_imagegen")
    assert not {m for m in loaded if m.startswith("nostr_imagegen.testing")}
    loaded = _modules_after("import nostr_imagegen.testing")
    assert not {m.split(".")[0] for m in loaded} & {"torch", "diffusers", "transformers", "peft"}


def test_every_public_name_is_defined() -> None:
    assert len(testing.__all__) == len(set(testing.__all__))
    for name in testing.__all__:
        assert getattr(testing, name) is not None
    assert testing.TINY_NATIVE_SIZE == 64


@pytest.mark.engine
def test_a_text_encoder_lora_adapts_every_text_encoder(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    from safetensors import safe_open

    def components(lora: Path) -> set[str]:
        with safe_open(str(lora), framework="pt") as weights:
            return {key.split(".")[0] for key in weights.keys()}  # noqa: SIM118

    assert components(tiny_models.lora_a) == {"unet"}
    xl = testing.build_tiny_lora(tmp_path, tiny_models.sdxl, rank=2, text_encoder=True)
    assert components(xl) == {"unet", "text_encoder", "text_encoder_2"}
