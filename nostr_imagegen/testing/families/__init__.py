"""Tiny random-weight pipelines of every model family, and LoRAs for them.

    folder = build_tiny_family(tmp / "flux", ModelFamily.FLUX)     # saved with save_pretrained
    lora = build_tiny_family_lora(tmp / "flux-lora", folder, ModelFamily.FLUX, seed=1)

Each is built from tiny configs (about 1-3 MB; diffusers' own pipeline tests size them the
same way), with tokenizers made in memory, and saved with ``save_pretrained``: the engine
loads it back through the family's real ``from_pretrained``. The VAEs keep the real
compression (8x; 32x for Sana) and latent channels (16; 32 for FLUX.2 and Sana), so the
size rules are the real ones. Transformer ``Linear`` weights are re-drawn N(0, 1/fan_in) so
the prompt, a negative prompt or a LoRA visibly changes the pixels (with PyTorch's default
init a random transformer barely reacts). They are native at ``TINY_NATIVE_SIZE`` (64).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from nostr_imagegen.imagejob.dimensions import ModelFamily
from nostr_imagegen.testing.families import flux, qwen, sana
from nostr_imagegen.testing.loras import build_tiny_lora
from nostr_imagegen.testing.pipelines import build_tiny_pipeline, seeded

__all__ = ["build_tiny_family", "build_tiny_family_lora"]

#: The UNet families come from ``build_tiny_pipeline``; these from their own builders.
_TRANSFORMER_BUILDERS: Final[dict[ModelFamily, Callable[[], Any]]] = {
    ModelFamily.SD3: flux.tiny_sd3,
    ModelFamily.FLUX: flux.tiny_flux,
    ModelFamily.CHROMA: flux.tiny_chroma,
    ModelFamily.FLUX2: qwen.tiny_flux2,
    ModelFamily.QWENIMAGE: qwen.tiny_qwenimage,
    ModelFamily.ZIMAGE: qwen.tiny_zimage,
    ModelFamily.SANA: sana.tiny_sana,
}
_UNET_FAMILIES: Final = (ModelFamily.SD15, ModelFamily.SD2, ModelFamily.SDXL)
#: The attention projections every family's transformer names the same way.
_TRANSFORMER_TARGETS: Final = ["to_q", "to_k", "to_v", "to_out.0"]


def build_tiny_family(folder: Path, family: ModelFamily, *, seed: int = 0) -> Path:
    """A random-weight pipeline of ``family`` saved into ``folder`` (returned); the same
    ``seed`` gives the same weights."""
    folder = Path(folder)
    if family in _UNET_FAMILIES:
        return build_tiny_pipeline(folder, family, seed=seed)
    with seeded(seed):
        pipeline = _TRANSFORMER_BUILDERS[family]()
    pipeline.save_pretrained(folder)
    return folder


def build_tiny_family_lora(
    folder: Path, pipeline_folder: Path, family: ModelFamily, *, seed: int = 1, rank: int = 4
) -> Path:
    """A random LoRA for the tiny ``family`` pipeline in ``pipeline_folder``, adapting the
    denoiser's attention projections; returns its ``pytorch_lora_weights.safetensors``."""
    if family in _UNET_FAMILIES:
        return build_tiny_lora(folder, pipeline_folder, seed=seed, rank=rank)
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    diffusers: Any = importlib.import_module("diffusers")
    folder, pipeline_folder = Path(folder), Path(pipeline_folder)
    index = json.loads((pipeline_folder / "model_index.json").read_text(encoding="utf-8"))
    transformer_class = getattr(diffusers, index["transformer"][1])
    transformer = transformer_class.from_pretrained(pipeline_folder, subfolder="transformer")
    config = LoraConfig(
        r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=_TRANSFORMER_TARGETS
    )
    with seeded(seed):
        inject_adapter_in_model(config, transformer, adapter_name="default")
    # Transformer LoRAs are saved in peft's keys, as diffusers' training scripts save them.
    state = get_peft_model_state_dict(
        transformer, adapter_name="default", save_embedding_layers=False
    )
    saver = getattr(diffusers, index["_class_name"])
    saver.save_lora_weights(folder, transformer_lora_layers=state, safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"
