"""Helpers shared by the engine tests (imported as a plain module; fixtures are in conftest)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.nostr.keys import Keys

CUSTOMER = Keys.generate()
PROMPT = "a purple ostrich watching the sunset"

MakeJob = Callable[..., ImageJob]


@dataclass(frozen=True)
class TinyModels:
    sd15: Path
    sdxl: Path
    #: Two different LoRAs for the SD 1.5 pipeline, one for the SDXL pipeline.
    lora_a: Path
    lora_b: Path
    lora_xl: Path
    #: The SD 1.5 pipeline as one original-layout .safetensors checkpoint.
    single_file: Path


def tiny_config_data(models: TinyModels, **sections: Any) -> dict[str, Any]:
    """Engine configuration data offering the tiny models (native size 64, 2 steps)."""
    common = {"steps": 2, "guidance_scale": 5.0, "native_size": 64}
    data: dict[str, Any] = {
        "models": {
            "tiny": {"source": str(models.sd15), "family": "sd15", "default": True, **common},
            "tiny-xl": {"source": str(models.sdxl), "family": "sdxl", **common},
            "tiny-single": {
                "source": str(models.single_file),
                "family": "sd15",
                "single_file_config": str(models.sd15),
                **common,
            },
        },
        "loras": {
            "noise-a": {"source": str(models.lora_a), "family": "sd15"},
            "noise-b": {"source": str(models.lora_b), "family": "sd15", "weight": 0.7},
            "noise-xl": {"source": str(models.lora_xl), "family": "sdxl"},
        },
        "device": "cpu",
    }
    data.update(sections)
    return data
