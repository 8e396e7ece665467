"""Tiny random-weight pipelines: a model that needs no download, for tests, demos and benchmarks.

They draw noise-like pictures, but they go through exactly the code a real model does: saved
with ``save_pretrained`` and loaded back by the real diffusers loaders, LoRAs saved with
``save_lora_weights`` and loaded as named adapters, single-file checkpoints in the original
Stable Diffusion key layout loaded with ``from_single_file``.

    >>> folder = build_tiny_pipeline(Path("/tmp/tiny-sd15"))            # SD 1.5 layout
    >>> xl = build_tiny_pipeline(Path("/tmp/tiny-sdxl"), ModelFamily.SDXL)
    >>> lora = build_tiny_lora(Path("/tmp/tiny-lora"), folder, seed=1)
    >>> write_tiny_config(Path("/tmp/engine.toml"), {"tiny": folder}, loras={"noise": lora})

Shapes (what DESIGN.md calls the offline test model): UNet ``block_out_channels`` (32, 64),
one layer per block, cross-attention width 32 (64 for SDXL: two text encoders concatenated);
a four-block VAE, so latents are 1/8 of the image like real Stable Diffusion; CLIP text
encoders of hidden size 32; a byte-level CLIP tokenizer built in memory (no merges). Their
native size is 64 pixels. ``wider=True`` builds the SD 1.5 block layout (four levels, two
layers per block) at reduced widths, for benchmarks that want a realistic shape at 512x512
(native size ``WIDER_NATIVE_SIZE``).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import torch

from nostr_imagegen.imagejob.dimensions import ModelFamily

__all__ = [
    "TINY_NATIVE_SIZE",
    "WIDER_NATIVE_SIZE",
    "build_tiny_lora",
    "build_tiny_pipeline",
    "save_single_file_checkpoint",
    "tiny_tokenizer",
    "write_tiny_config",
]

logger = logging.getLogger(__name__)

#: Side length tiny pipelines are configured for (the engine's ``native_size`` override).
TINY_NATIVE_SIZE: Final = 64
#: Native side of the ``wider`` benchmark model (an SD 1.5 shape at reduced widths).
WIDER_NATIVE_SIZE: Final = 512

_TINY_WIDTHS: Final = (32, 64)
_WIDER_WIDTHS: Final = (16, 32, 64, 64)
_LORA_TARGETS: Final = ["to_q", "to_k", "to_v", "to_out.0"]
_START, _END = "<|startoftext|>", "<|endoftext|>"


def _diffusers(module: str = "diffusers") -> Any:
    """diffusers, imported on use and typed loosely (its classes are untyped)."""
    return importlib.import_module(module)


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: one printable character for each of the 256 bytes."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars: dict[int, int] = {b: b for b in printable}
    extra = 0
    for byte in range(256):
        if byte not in chars:
            chars[byte] = 256 + extra
            extra += 1
    return [chr(chars[byte]) for byte in range(256)]


def _tiny_vocab() -> dict[str, int]:
    alphabet = _bytes_to_unicode()
    tokens = [*alphabet, *(char + "</w>" for char in alphabet), _START, _END]
    return {token: index for index, token in enumerate(tokens)}


def tiny_tokenizer() -> Any:
    """A ``CLIPTokenizer`` over the 256 byte characters (with and without ``</w>``) and the
    two special tokens, no merges: every byte is one token."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=_tiny_vocab(), merges=[], model_max_length=77)


def _text_encoder(hidden: int, *, projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab = _tiny_vocab()
    config = CLIPTextConfig(
        bos_token_id=vocab[_START],
        eos_token_id=vocab[_END],
        pad_token_id=vocab[_END],
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(vocab),
        max_position_embeddings=77,
        projection_dim=hidden,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _unet(
    widths: Sequence[int], *, layers: int, cross_attention_dim: int, sdxl: bool, text_dim: int
) -> Any:
    UNet2DConditionModel = _diffusers().UNet2DConditionModel

    levels = len(widths)
    # The SD layout: cross-attention on every level but the deepest.
    down = tuple("CrossAttnDownBlock2D" if i < levels - 1 else "DownBlock2D" for i in range(levels))
    up = tuple("UpBlock2D" if i == 0 else "CrossAttnUpBlock2D" for i in range(levels))
    extra: dict[str, Any] = {}
    if sdxl:
        extra = {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            # pooled text embedding + six time ids of 8 each (original size, crop, target)
            "projection_class_embeddings_input_dim": text_dim + 6 * 8,
            "use_linear_projection": True,
        }
    return UNet2DConditionModel(
        sample_size=TINY_NATIVE_SIZE // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(widths),
        layers_per_block=layers,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=tuple(max(1, width // 16) for width in widths),
        norm_num_groups=8,
        **extra,
    )


def _vae(widths: Sequence[int]) -> Any:
    AutoencoderKL = _diffusers().AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(widths),
        up_block_types=("UpDecoderBlock2D",) * len(widths),
        block_out_channels=tuple(widths),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=TINY_NATIVE_SIZE,
    )


def _scheduler() -> Any:
    EulerDiscreteScheduler = _diffusers().EulerDiscreteScheduler

    # Stable Diffusion's training noise schedule.
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )


def build_tiny_pipeline(
    folder: Path,
    family: ModelFamily = ModelFamily.SD15,
    *,
    seed: int = 0,
    widths: Sequence[int] | None = None,
    wider: bool = False,
) -> Path:
    """Build a random-weight pipeline of ``family`` (SD 1.5 or SDXL) and save it into ``folder``.

    ``widths`` are the UNet's ``block_out_channels`` (default (32, 64), or (16, 32, 64, 64)
    with ``wider``); ``wider`` also gives two layers per block and a text encoder of width 64:
    the SD 1.5 layout (attention at the three upper levels) at under 1% of its weights.
    At 512x512 on one core of the 2-core development machine a ``wider`` model takes about
    0.25 s per denoising step without guidance (twice that with it) plus 0.3 s for the VAE
    decode: about a second for a 3-4 step image. The same ``seed`` gives the same
    weights. Returns ``folder``, loadable with ``DiffusionPipeline.from_pretrained``.
    """
    diffusers = _diffusers()

    if family not in (ModelFamily.SD15, ModelFamily.SDXL):
        raise ValueError(f"tiny pipelines exist for sd15 and sdxl, not {family.value}")
    unet_widths = (
        tuple(widths) if widths is not None else (_WIDER_WIDTHS if wider else _TINY_WIDTHS)
    )
    if any(width <= 0 or width % 8 for width in unet_widths) or len(unet_widths) < 2:
        raise ValueError(f"widths must be at least two multiples of 8, got {unet_widths}")
    text_hidden = 64 if wider else 32
    vae_widths = (8, 16, 16, 16) if wider else (8, 8, 16, 16)
    layers = 2 if wider else 1
    sdxl = family is ModelFamily.SDXL
    folder = Path(folder)

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # weights drawn from the global generator; restored below
    try:
        tokenizer = tiny_tokenizer()
        text_encoder = _text_encoder(text_hidden, projection=False)
        if sdxl:
            text_encoder_2 = _text_encoder(text_hidden, projection=True)
            pipeline: Any = diffusers.StableDiffusionXLPipeline(
                vae=_vae(vae_widths),
                text_encoder=text_encoder,
                text_encoder_2=text_encoder_2,
                tokenizer=tokenizer,
                tokenizer_2=tiny_tokenizer(),
                unet=_unet(
                    unet_widths,
                    layers=layers,
                    cross_attention_dim=2 * text_hidden,
                    sdxl=True,
                    text_dim=text_hidden,
                ),
                scheduler=_scheduler(),
            )
        else:
            pipeline = diffusers.StableDiffusionPipeline(
                vae=_vae(vae_widths),
                text_encoder=text_encoder,
                tokenizer=tokenizer,
                unet=_unet(
                    unet_widths,
                    layers=layers,
                    cross_attention_dim=text_hidden,
                    sdxl=False,
                    text_dim=text_hidden,
                ),
                scheduler=_scheduler(),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
    finally:
        torch.random.set_rng_state(generator_state)
    pipeline.save_pretrained(folder)
    logger.debug("tiny %s pipeline saved in %s", family.value, folder)
    return folder


def build_tiny_lora(folder: Path, pipeline_folder: Path, *, seed: int = 1, rank: int = 4) -> Path:
    """A random LoRA for the UNet of the tiny pipeline in ``pipeline_folder``.

    peft ``LoraConfig(init_lora_weights=False)`` on the attention projections, so both LoRA
    matrices are random and the adapter visibly changes the picture. Saved with the pipeline
    class's ``save_lora_weights``; returns the ``.safetensors`` file.
    """
    diffusers = _diffusers()
    convert_state_dict_to_diffusers = _diffusers("diffusers.utils").convert_state_dict_to_diffusers
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model_state_dict

    pipeline_folder = Path(pipeline_folder)
    unet = diffusers.UNet2DConditionModel.from_pretrained(pipeline_folder, subfolder="unet")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        unet.add_adapter(
            PeftLoraConfig(
                r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=_LORA_TARGETS
            )
        )
    finally:
        torch.random.set_rng_state(generator_state)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    index = json.loads((pipeline_folder / "model_index.json").read_text(encoding="utf-8"))
    saver: Any = (
        diffusers.StableDiffusionXLPipeline
        if index.get("_class_name") == "StableDiffusionXLPipeline"
        else diffusers.StableDiffusionPipeline
    )
    folder = Path(folder)
    saver.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


# ----- single-file checkpoints (the original Stable Diffusion key layout) -----------------


def _resnet_to_ldm(key: str) -> str:
    return (
        key.replace("norm1", "in_layers.0")
        .replace("conv1", "in_layers.2")
        .replace("norm2", "out_layers.0")
        .replace("conv2", "out_layers.3")
        .replace("time_emb_proj", "emb_layers.1")
        .replace("conv_shortcut", "skip_connection")
    )


def _unet_to_ldm(state: Mapping[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """Diffusers UNet keys -> ``model.diffusion_model.*`` keys (inverse of diffusers'
    ``convert_ldm_unet_checkpoint`` for the SD layout)."""
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        module, leaf = key.rsplit(".", 1)
        new: str
        if module in fixed:
            new = f"{fixed[module]}.{leaf}"
        elif parts[0] == "down_blocks":
            block, kind, index = int(parts[1]), parts[2], int(parts[3])
            tail = ".".join(parts[4:])
            base = 1 + block * (layers + 1)
            if kind == "resnets":
                new = f"input_blocks.{base + index}.0.{_resnet_to_ldm(tail)}"
            elif kind == "attentions":
                new = f"input_blocks.{base + index}.1.{tail}"
            else:  # downsamplers.0.conv.*
                new = f"input_blocks.{base + layers}.0.op.{'.'.join(parts[5:])}"
        elif parts[0] == "mid_block":
            kind, index, tail = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "resnets":
                new = f"middle_block.{2 * index}.{_resnet_to_ldm(tail)}"
            else:
                new = f"middle_block.1.{tail}"
        elif parts[0] == "up_blocks":
            block, kind, index = int(parts[1]), parts[2], int(parts[3])
            tail = ".".join(parts[4:])
            base = block * (layers + 1)
            if kind == "resnets":
                new = f"output_blocks.{base + index}.0.{_resnet_to_ldm(tail)}"
            elif kind == "attentions":
                new = f"output_blocks.{base + index}.1.{tail}"
            else:  # upsamplers.0.conv.*: after the attention when the block has one
                has_attention = any(k.startswith(f"up_blocks.{block}.attentions.") for k in state)
                slot = 2 if has_attention else 1
                new = f"output_blocks.{base + layers}.{slot}.conv.{'.'.join(parts[5:])}"
        else:
            raise ValueError(f"no single-file name for UNet weight {key}")
        out[f"model.diffusion_model.{new}"] = tensor
    return out


def _vae_to_ldm(state: Mapping[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """Diffusers VAE keys -> ``first_stage_model.*`` keys."""
    attention = {
        "group_norm": "norm",
        "to_q": "q",
        "to_k": "k",
        "to_v": "v",
        "to_out.0": "proj_out",
    }
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        side, rest = parts[0], parts[1:]
        new = key
        if rest and rest[0] == "conv_norm_out":
            new = f"{side}.norm_out.{'.'.join(rest[1:])}"
        elif rest and rest[0] == "down_blocks":
            block, kind = int(rest[1]), rest[2]
            if kind == "resnets":
                tail = ".".join(rest[4:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.down.{block}.block.{rest[3]}.{tail}"
            else:
                new = f"{side}.down.{block}.downsample.conv.{'.'.join(rest[5:])}"
        elif rest and rest[0] == "up_blocks":
            block, kind = levels - 1 - int(rest[1]), rest[2]
            if kind == "resnets":
                tail = ".".join(rest[4:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.up.{block}.block.{rest[3]}.{tail}"
            else:
                new = f"{side}.up.{block}.upsample.conv.{'.'.join(rest[5:])}"
        elif rest and rest[0] == "mid_block":
            if rest[1] == "resnets":
                tail = ".".join(rest[3:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.mid.block_{int(rest[2]) + 1}.{tail}"
            else:
                inner = ".".join(rest[3:])
                for diffusers_name, ldm_name in attention.items():
                    if inner.startswith(diffusers_name + "."):
                        inner = ldm_name + inner[len(diffusers_name) :]
                        break
                new = f"{side}.mid.attn_1.{inner}"
        out[f"first_stage_model.{new}"] = tensor
    return out


def save_single_file_checkpoint(pipeline_folder: Path, path: Path) -> Path:
    """Write the SD 1.5 pipeline in ``pipeline_folder`` as one ``.safetensors`` checkpoint in
    the original Stable Diffusion layout (``model.diffusion_model.*``, ``first_stage_model.*``,
    ``cond_stage_model.transformer.*``), the way checkpoints are shared on model sites.

    Load it back with ``StableDiffusionPipeline.from_single_file(path,
    config=pipeline_folder)``: the folder supplies the component configs and the tokenizer.
    """
    diffusers = _diffusers()
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    pipeline_folder = Path(pipeline_folder)
    index = json.loads((pipeline_folder / "model_index.json").read_text(encoding="utf-8"))
    if index.get("_class_name") != "StableDiffusionPipeline":
        raise ValueError("single-file export is implemented for SD 1.5 pipelines only")
    unet = diffusers.UNet2DConditionModel.from_pretrained(pipeline_folder, subfolder="unet")
    vae = diffusers.AutoencoderKL.from_pretrained(pipeline_folder, subfolder="vae")
    text_encoder = CLIPTextModel.from_pretrained(pipeline_folder, subfolder="text_encoder")
    checkpoint = {
        **_unet_to_ldm(unet.state_dict(), int(unet.config.layers_per_block)),
        **_vae_to_ldm(vae.state_dict(), len(vae.config.block_out_channels)),
        # The original layout is the transformers CLIP one, with its ``text_model.`` level
        # (transformers 5.6 flattened CLIPTextModel and dropped it).
        **{
            "cond_stage_model.transformer."
            + (key if key.startswith("text_model.") else f"text_model.{key}"): tensor
            for key, tensor in text_encoder.state_dict().items()
        },
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: tensor.contiguous() for key, tensor in checkpoint.items()}, str(path))
    return path


# ----- configuration -----------------------------------------------------------------------


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
