"""An engine TOML offering tiny models, for tests and demos that go through a config file.

    >>> write_tiny_config(Path("/tmp/engine.toml"), {"tiny": folder}, loras={"noise": lora})

writes::

    [models.tiny]
    source = "/tmp/tiny-sd15"
    family = "sd15"
    steps = 2
    guidance_scale = 5.0
    native_size = 64

    [loras.noise]
    source = "/tmp/tiny-lora/pytorch_lora_weights.safetensors"
    family = "sd15"
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from nostr_imagegen.imagejob.dimensions import ModelFamily
from nostr_imagegen.testing.pipelines import TINY_NATIVE_SIZE

__all__ = ["write_tiny_config"]


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_tiny_config(
    path: Path,
    models: Mapping[str, Path],
    *,
    families: Mapping[str, ModelFamily] | None = None,
    loras: Mapping[str, Path] | None = None,
    lora_families: Mapping[str, ModelFamily] | None = None,
    steps: int = 2,
    native_size: int = TINY_NATIVE_SIZE,
    device: str | None = None,
    extra: str = "",
) -> Path:
    """Write an engine TOML offering the tiny ``models`` (name -> folder or file) and ``loras``.

    Families default to SD 1.5; the first model is the default; ``device`` is written at the
    top when given; ``extra`` is TOML appended as is (``[limits]``, ``[cache]``...
    sections). Returns ``path``.
    """
    families = families or {}
    lora_families = lora_families or {}
    lines: list[str] = [f"device = {_toml_string(device)}", ""] if device else []
    for name, source in models.items():
        family = families.get(name, ModelFamily.SD15)
        lines += [
            f"[models.{name}]",
            f"source = {_toml_string(str(source))}",
            f'family = "{family.value}"',
            f"steps = {steps}",
            "guidance_scale = 5.0",
            f"native_size = {native_size}",
            "",
        ]
    for name, source in (loras or {}).items():
        family = lora_families.get(name, ModelFamily.SD15)
        lines += [
            f"[loras.{name}]",
            f"source = {_toml_string(str(source))}",
            f'family = "{family.value}"',
            "",
        ]
    path = Path(path)
    path.write_text("\n".join(lines) + ("\n" + extra if extra else ""), encoding="utf-8")
    return path
