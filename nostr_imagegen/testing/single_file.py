"""A tiny SD 1.5, SD 2, SDXL or Z-Image pipeline as one single-file checkpoint, the way
checkpoints are shared.

    >>> checkpoint = save_single_file_checkpoint(folder, Path("/tmp/tiny.safetensors"))
    >>> StableDiffusionPipeline.from_single_file(checkpoint, config=folder)

An SD 1.5 file holds the original Stable Diffusion key layout (``model.diffusion_model.*``,
``first_stage_model.*``, ``cond_stage_model.transformer.*``); an SD 2 file has the OpenCLIP
text encoder instead (``cond_stage_model.model.*``, q/k/v fused into ``in_proj``); an SDXL
file has both of SDXL's encoders (``conditioner.embedders.0.transformer.*`` CLIP,
``conditioner.embedders.1.model.*`` OpenCLIP with its projection); a Z-Image file holds only the
transformer in the original Z-Image layout (fused ``attention.qkv``, ``x_embedder``,
``final_layer``), as ComfyUI ships it. Each is the inverse of what diffusers' single-file
converter reads, so loading it exercises that converter.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["save_single_file_checkpoint"]


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


#: Diffusers Z-Image transformer names -> the original ones (inverse of diffusers'
#: ``convert_z_image_transformer_checkpoint_to_diffusers`` renames).
_Z_IMAGE_RENAMES = {
    "all_final_layer.2-1.": "final_layer.",
    "all_x_embedder.2-1.": "x_embedder.",
    ".attention.to_out.0.": ".attention.out.",
    ".attention.norm_k.": ".attention.k_norm.",
    ".attention.norm_q.": ".attention.q_norm.",
}


def _z_image_to_original(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers ``ZImageTransformer2DModel`` keys -> ``model.diffusion_model.*`` keys, with
    each attention's q, k and v fused into one ``qkv`` weight as the original model has it."""
    import torch

    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue  # fused into the matching to_q below
        if ".attention.to_q." in key:
            parts = [state[key.replace(".to_q.", f".{name}.")] for name in ("to_q", "to_k", "to_v")]
            key, tensor = key.replace(".attention.to_q.", ".attention.qkv."), torch.cat(parts)
        for diffusers_name, original_name in _Z_IMAGE_RENAMES.items():
            key = key.replace(diffusers_name, original_name)
        out[f"model.diffusion_model.{key}"] = tensor
    return out


def _z_image_checkpoint(pipeline_folder: Path) -> dict[str, torch.Tensor]:
    diffusers: Any = importlib.import_module("diffusers")
    transformer = diffusers.ZImageTransformer2DModel.from_pretrained(
        pipeline_folder, subfolder="transformer"
    )
    return _z_image_to_original(transformer.state_dict())


def _clip_to_ldm(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """transformers CLIP keys under ``prefix``, with the ``text_model.`` level the original
    layout has (transformers 5.6 flattened ``CLIPTextModel`` and dropped it)."""
    return {
        prefix + (key if key.startswith("text_model.") else f"text_model.{key}"): tensor
        for key, tensor in state.items()
    }


#: transformers CLIP names -> OpenCLIP ones (inverse of diffusers' ``openclip`` mapping).
_OPEN_CLIP_RENAMES = {
    "text_model.encoder.layers.": "transformer.resblocks.",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    ".self_attn.": ".attn.",
    ".mlp.fc1.": ".mlp.c_fc.",
    ".mlp.fc2.": ".mlp.c_proj.",
}


def _open_clip_to_ldm(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A ``CLIPTextModelWithProjection`` as OpenCLIP keys under ``prefix`` (inverse of
    diffusers' ``convert_open_clip_checkpoint``): q, k and v fused into ``in_proj_*``, the
    projection stored transposed, as OpenCLIP multiplies by it from the right."""
    import torch

    # transformers 5.6 flattened CLIPTextModel (no ``text_model.`` level); put it back.
    state = {
        key if key.startswith(("text_model.", "text_projection.")) else f"text_model.{key}": value
        for key, value in state.items()
    }
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if ".self_attn.k_proj." in key or ".self_attn.v_proj." in key:
            continue  # fused into the matching q_proj below
        if key == "text_projection.weight":
            out[prefix + "text_projection"] = tensor.T
            continue
        if key == "text_model.embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = tensor
            continue
        if key == "text_model.embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = tensor
            continue
        if key.startswith("text_model.final_layer_norm."):
            out[prefix + "ln_final." + key.rsplit(".", 1)[1]] = tensor
            continue
        if ".self_attn.q_proj." in key:
            leaf = key.rsplit(".", 1)[1]
            parts = [
                state[key.replace(".q_proj.", f".{name}.")]
                for name in ("q_proj", "k_proj", "v_proj")
            ]
            key, tensor = key.replace(f".q_proj.{leaf}", f".in_proj_{leaf}"), torch.cat(parts)
        for transformers_name, open_clip_name in _OPEN_CLIP_RENAMES.items():
            key = key.replace(transformers_name, open_clip_name)
        out[prefix + key] = tensor
    return out


def _sdxl_checkpoint(pipeline_folder: Path) -> dict[str, torch.Tensor]:
    diffusers: Any = importlib.import_module("diffusers")
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = diffusers.UNet2DConditionModel.from_pretrained(pipeline_folder, subfolder="unet")
    vae = diffusers.AutoencoderKL.from_pretrained(pipeline_folder, subfolder="vae")
    text_encoder = CLIPTextModel.from_pretrained(pipeline_folder, subfolder="text_encoder")
    text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(
        pipeline_folder, subfolder="text_encoder_2"
    )
    return {
        **_unet_to_ldm(unet.state_dict(), int(unet.config.layers_per_block)),
        **_vae_to_ldm(vae.state_dict(), len(vae.config.block_out_channels)),
        **_clip_to_ldm(text_encoder.state_dict(), "conditioner.embedders.0.transformer."),
        **_open_clip_to_ldm(text_encoder_2.state_dict(), "conditioner.embedders.1.model."),
    }


def save_single_file_checkpoint(pipeline_folder: Path, path: Path) -> Path:
    """Write the SD 1.5 pipeline in ``pipeline_folder`` as one ``.safetensors`` checkpoint in
    the original Stable Diffusion layout (``model.diffusion_model.*``, ``first_stage_model.*``,
    ``cond_stage_model.transformer.*``), the way checkpoints are shared on model sites.

    Load it back with ``StableDiffusionPipeline.from_single_file(path,
    config=pipeline_folder)``: the folder supplies the component configs and the tokenizer.
    An SD 2 folder (linear transformer projections) gets the OpenCLIP text-encoder layout; a
    ``StableDiffusionXLPipeline`` folder gives an SDXL file, loaded the same way with
    ``StableDiffusionXLPipeline``.
    A ``ZImagePipeline`` folder gives a transformer-only file: load it with
    ``ZImageTransformer2DModel.from_single_file(path, config=pipeline_folder,
    subfolder="transformer")`` and the rest of the pipeline from the folder.
    """
    diffusers: Any = importlib.import_module("diffusers")
    from transformers import CLIPTextModel

    pipeline_folder = Path(pipeline_folder)
    index = json.loads((pipeline_folder / "model_index.json").read_text(encoding="utf-8"))
    kind = index.get("_class_name")
    if kind == "ZImagePipeline":
        return _write(_z_image_checkpoint(pipeline_folder), Path(path))
    if kind == "StableDiffusionXLPipeline":
        return _write(_sdxl_checkpoint(pipeline_folder), Path(path))
    if kind != "StableDiffusionPipeline":
        raise ValueError(
            "single-file export is implemented for SD 1.5, SD 2, SDXL and Z-Image pipelines only"
        )
    unet = diffusers.UNet2DConditionModel.from_pretrained(pipeline_folder, subfolder="unet")
    vae = diffusers.AutoencoderKL.from_pretrained(pipeline_folder, subfolder="vae")
    text_encoder = CLIPTextModel.from_pretrained(pipeline_folder, subfolder="text_encoder")
    # SD 2.x is the SD 1.5 layout with linear transformer projections and an OpenCLIP text
    # encoder (``cond_stage_model.model.*``), which is how diffusers' loader tells them apart.
    sd2 = bool(unet.config.use_linear_projection)
    text = (
        _open_clip_to_ldm(text_encoder.state_dict(), "cond_stage_model.model.")
        if sd2
        else _clip_to_ldm(text_encoder.state_dict(), "cond_stage_model.transformer.")
    )
    checkpoint = {
        **_unet_to_ldm(unet.state_dict(), int(unet.config.layers_per_block)),
        **_vae_to_ldm(vae.state_dict(), len(vae.config.block_out_channels)),
        **text,
    }
    return _write(checkpoint, Path(path))


def _write(checkpoint: Mapping[str, torch.Tensor], path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: tensor.contiguous() for key, tensor in checkpoint.items()}, str(path))
    return path
