"""Random LoRAs for the tiny pipelines, in the layout diffusers' ``load_lora_weights`` reads.

    >>> lora = build_tiny_lora(Path("/tmp/tiny-lora"), folder, seed=1)
    >>> both = build_tiny_lora(Path("/tmp/te-lora"), folder, rank=2, alpha=4, text_encoder=True)

The adapters are built with peft alone (``inject_adapter_in_model`` and
``get_peft_model_state_dict``), never through transformers' PEFT integration
(``PreTrainedModel.add_adapter``): that integration demands a newer peft than some
transformers releases can be installed beside (transformers 5.24 asks for peft 0.22 while
the newest peft is 0.21.2), and the layers peft injects are the same either way. The state
dicts are converted to the diffusers key layout (``lora.down.weight`` / ``lora.up.weight``)
and saved with the pipeline class's ``save_lora_weights``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Final

from nostr_imagegen.testing.pipelines import seeded

__all__ = ["build_tiny_lora"]

#: The UNet's attention projections (diffusers names).
_UNET_TARGETS: Final = ["to_q", "to_k", "to_v", "to_out.0"]
#: The CLIP text encoders' attention projections (transformers names).
_TEXT_ENCODER_TARGETS: Final = ["q_proj", "k_proj", "v_proj", "out_proj"]


def build_tiny_lora(
    folder: Path,
    pipeline_folder: Path,
    *,
    seed: int = 1,
    rank: int = 4,
    alpha: int | None = None,
    text_encoder: bool = False,
) -> Path:
    """A random LoRA for the tiny pipeline in ``pipeline_folder``; returns its file.

    It adapts the UNet's attention projections and, with ``text_encoder``, those of every
    text encoder of the pipeline too (both for SDXL). peft ``LoraConfig(r=rank,
    lora_alpha=alpha, init_lora_weights=False)``: both LoRA matrices are random, so the
    adapter visibly changes the picture; ``alpha`` defaults to ``rank`` (scale 1), another
    value makes diffusers scale the adapter by ``weight * alpha / rank``. The same ``seed``
    gives the same weights. Saved into ``folder`` as ``pytorch_lora_weights.safetensors``.
    """
    diffusers: Any = importlib.import_module("diffusers")
    folder, pipeline_folder = Path(folder), Path(pipeline_folder)
    index = json.loads((pipeline_folder / "model_index.json").read_text(encoding="utf-8"))
    sdxl = index.get("_class_name") == "StableDiffusionXLPipeline"
    lora_alpha = rank if alpha is None else alpha

    unet = diffusers.UNet2DConditionModel.from_pretrained(pipeline_folder, subfolder="unet")
    layers: dict[str, Any] = {}
    with seeded(seed):
        layers["unet_lora_layers"] = _random_lora(unet, _UNET_TARGETS, rank, lora_alpha)
        if text_encoder:
            for component in ("text_encoder", "text_encoder_2") if sdxl else ("text_encoder",):
                model = _load_text_encoder(pipeline_folder, component)
                layers[f"{component}_lora_layers"] = _random_lora(
                    model, _TEXT_ENCODER_TARGETS, rank, lora_alpha
                )
    saver = diffusers.StableDiffusionXLPipeline if sdxl else diffusers.StableDiffusionPipeline
    saver.save_lora_weights(folder, safe_serialization=True, **layers)
    return folder / "pytorch_lora_weights.safetensors"


def _load_text_encoder(pipeline_folder: Path, component: str) -> Any:
    transformers: Any = importlib.import_module("transformers")
    model_class = (
        transformers.CLIPTextModelWithProjection
        if component == "text_encoder_2"
        else transformers.CLIPTextModel
    )
    return model_class.from_pretrained(pipeline_folder, subfolder=component)


def _random_lora(model: Any, targets: list[str], rank: int, alpha: int) -> dict[str, Any]:
    """Inject a random LoRA adapter into ``model`` with peft; its weights in diffusers keys."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    to_diffusers = importlib.import_module("diffusers.utils").convert_state_dict_to_diffusers
    config = LoraConfig(
        r=rank, lora_alpha=alpha, init_lora_weights=False, target_modules=list(targets)
    )
    inject_adapter_in_model(config, model, adapter_name="default")
    # No embedding layer is adapted; "auto" would ask the hub whether the base model's
    # vocabulary was resized, a network lookup for a model that is not there.
    state = get_peft_model_state_dict(model, adapter_name="default", save_embedding_layers=False)
    converted: dict[str, Any] = to_diffusers(state)
    return converted
