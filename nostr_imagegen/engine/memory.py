"""Memory and speed options of a model, applied when it is loaded.

    [models.flux-dev]
    source = "black-forest-labs/FLUX.1-dev"
    family = "flux"
    dtype = "bfloat16"            # this model's precision (over the engine's dtype)
    offload = "model"             # or "sequential": weights on the GPU only while used
    vae_tiling = true             # decode large images in tiles
    vae_slicing = true            # decode a batch one image at a time
    attention_backend = "flash"   # a diffusers attention backend for the denoiser
    compile = true                # torch.compile the denoiser once, at load
    quantization = "bnb-4bit"     # or "bnb-8bit", "torchao-int8", "gguf" (with gguf_file)

What needs something this machine may lack is checked when the engine starts
(``check_memory_options``): offloading needs accelerate and a CUDA device, each
quantization its package (bitsandbytes, torchao, gguf), which are optional and not installed
with this library; a missing one is a ``ConfigError`` naming the model, the key and the
package. ``load_options`` gives the extra keyword arguments of ``from_pretrained``
(``quantization_config``, a GGUF ``transformer``) and ``place_and_tune`` replaces the plain
``pipeline.to(device)`` with the offload hooks, VAE modes, attention backend and compile.

Attention backends: the transformer families' attention goes through diffusers' dispatcher,
so any ``AttentionBackendName`` (``native``, ``flash``, ``sage``, ``xformers``...) is set
with ``set_attention_backend``; the UNet families' processors predate it, so they take
``native`` (PyTorch's scaled-dot-product attention, what they use by default) or
``xformers``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Final

import torch

from nostr_imagegen.engine.device import select_dtype
from nostr_imagegen.engine_config import EngineConfig, ModelConfig
from nostr_imagegen.errors import ConfigError
from nostr_imagegen.imagejob.dimensions import ModelFamily

__all__ = [
    "QUANTIZATION_PACKAGES",
    "check_memory_options",
    "denoiser",
    "load_options",
    "model_dtype",
    "place_and_tune",
]

#: The package each ``quantization`` value needs (``pip install`` name).
QUANTIZATION_PACKAGES: Final = {
    "bnb-4bit": "bitsandbytes",
    "bnb-8bit": "bitsandbytes",
    "torchao-int8": "torchao",
    "gguf": "gguf",
}

#: Families whose denoiser is a UNet (``pipeline.unet``); every other one has a transformer.
_UNET_FAMILIES: Final = frozenset({ModelFamily.SD15, ModelFamily.SD2, ModelFamily.SDXL})

#: Transformer classes that load a GGUF single file, per family (diffusers supports these).
_GGUF_TRANSFORMERS: Final = {
    ModelFamily.FLUX: "FluxTransformer2DModel",
    ModelFamily.SD3: "SD3Transformer2DModel",
}

#: Attention backends the UNet families' (pre-dispatcher) processors can use.
_UNET_ATTENTION: Final = ("native", "xformers")


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def check_memory_options(config: EngineConfig, device: str) -> None:
    """Refuse, at start-up, options this machine cannot apply. Raises ``ConfigError``."""
    for name, model in config.models.items():
        where = f"models.{name}"
        if model.offload is not None:
            if not device.startswith("cuda"):
                raise ConfigError(
                    f'{where}.offload = "{model.offload}" needs a CUDA device; this engine '
                    f"runs on {device}"
                )
            if not _installed("accelerate"):
                raise ConfigError(f"{where}.offload needs the accelerate package (not installed)")
        if model.quantization is not None:
            package = QUANTIZATION_PACKAGES[model.quantization]
            if not _installed(package):
                raise ConfigError(
                    f'{where}.quantization = "{model.quantization}" needs the {package} '
                    f"package, which is not installed (pip install {package})"
                )
            if model.quantization == "gguf" and model.family not in _GGUF_TRANSFORMERS:
                raise ConfigError(
                    f"{where}.gguf_file: GGUF transformers load for the families "
                    f"{', '.join(family.value for family in _GGUF_TRANSFORMERS)}, not "
                    f"{model.family.value}"
                )
        backend = model.attention_backend
        if backend is not None:
            _check_attention_backend(where, model.family, backend)


def _check_attention_backend(where: str, family: ModelFamily, backend: str) -> None:
    if family in _UNET_FAMILIES:
        if backend not in _UNET_ATTENTION:
            raise ConfigError(
                f"{where}.attention_backend {backend!r}: {family.value} models take "
                f"{' or '.join(_UNET_ATTENTION)}"
            )
        if backend == "xformers" and not _installed("xformers"):
            raise ConfigError(
                f"{where}.attention_backend xformers needs the xformers package (not installed)"
            )
        return
    dispatch: Any = importlib.import_module("diffusers.models.attention_dispatch")
    known = [member.value for member in dispatch.AttentionBackendName]
    if backend not in known:
        raise ConfigError(
            f"{where}.attention_backend {backend!r} is not a diffusers attention backend; "
            f"use one of {', '.join(known)}"
        )


def model_dtype(model: ModelConfig, device: str, engine_dtype: torch.dtype) -> torch.dtype:
    """The precision ``model`` loads in: its own ``dtype``, else the engine's."""
    return select_dtype(device, model.dtype) if model.dtype is not None else engine_dtype


def _denoiser_name(family: ModelFamily) -> str:
    return "unet" if family in _UNET_FAMILIES else "transformer"


def denoiser(pipeline: Any) -> Any:
    """The pipeline's denoising network: its ``transformer`` or ``unet``."""
    for name in ("transformer", "unet"):
        module = getattr(pipeline, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise ConfigError(f"{type(pipeline).__name__} has neither a transformer nor a unet")


def load_options(model: ModelConfig, dtype: torch.dtype) -> dict[str, Any]:
    """Extra ``from_pretrained`` keyword arguments for the model's ``quantization``."""
    if model.quantization is None:
        return {}
    diffusers: Any = importlib.import_module("diffusers")
    if model.quantization == "gguf":
        assert model.gguf_file is not None  # the configuration pairs them
        transformer_class = getattr(diffusers, _GGUF_TRANSFORMERS[model.family])
        transformer = transformer_class.from_single_file(
            model.gguf_file,
            quantization_config=diffusers.GGUFQuantizationConfig(compute_dtype=dtype),
            torch_dtype=dtype,
        )
        return {"transformer": transformer}
    backend, kwargs = {
        "bnb-4bit": (
            "bitsandbytes_4bit",
            {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype},
        ),
        "bnb-8bit": ("bitsandbytes_8bit", {"load_in_8bit": True}),
        "torchao-int8": ("torchao", {"quant_type": "int8wo"}),
    }[model.quantization]
    return {
        "quantization_config": diffusers.PipelineQuantizationConfig(
            quant_backend=backend,
            quant_kwargs=kwargs,
            components_to_quantize=[_denoiser_name(model.family)],
        )
    }


def place_and_tune(pipeline: Any, model: ModelConfig, device: str) -> None:
    """Put ``pipeline`` on ``device`` (or behind offload hooks) and apply the model's VAE,
    attention and compile options."""
    if model.offload == "model":
        pipeline.enable_model_cpu_offload(device=device)
    elif model.offload == "sequential":
        pipeline.enable_sequential_cpu_offload(device=device)
    elif model.quantization not in ("bnb-4bit", "bnb-8bit"):
        pipeline.to(device)
    else:
        # bitsandbytes places its weights while loading and refuses .to() on them.
        for name, component in pipeline.components.items():
            if isinstance(component, torch.nn.Module) and name != _denoiser_name(model.family):
                component.to(device)
    vae = getattr(pipeline, "vae", None)
    if model.vae_tiling and vae is not None:
        vae.enable_tiling()
    if model.vae_slicing and vae is not None:
        vae.enable_slicing()
    if model.attention_backend is not None:
        _set_attention(pipeline, model)
    if model.compile:
        # In place (nn.Module.compile): the pipeline keeps the same module, so LoRA layers
        # found in it stay the ones that run.
        denoiser(pipeline).compile()


def _set_attention(pipeline: Any, model: ModelConfig) -> None:
    backend = model.attention_backend
    if model.family not in _UNET_FAMILIES:
        denoiser(pipeline).set_attention_backend(backend)
    elif backend == "xformers":
        pipeline.enable_xformers_memory_efficient_attention()  # checked installed at start
    else:
        processors: Any = importlib.import_module("diffusers.models.attention_processor")
        denoiser(pipeline).set_attn_processor(processors.AttnProcessor2_0())
