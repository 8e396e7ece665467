"""Tiny FLUX.1, Chroma and Stable Diffusion 3 pipelines: T5 (and CLIP) text encoders and an
MMDiT transformer over a 16-channel, 8x VAE, like the real ones.

    FluxPipeline              CLIP + T5, FluxTransformer2DModel (2x2 latents packed: 64 in)
    ChromaPipeline            T5 only, ChromaTransformer2DModel
    StableDiffusion3Pipeline  two CLIP-with-projection + T5, SD3Transformer2DModel (patch 2)
"""

from __future__ import annotations

from typing import Any, Final

from nostr_imagegen.testing.families._parts import (
    byte_tokenizer,
    diffusers,
    redraw_linear_weights,
    tiny_vae,
    transformers,
)
from nostr_imagegen.testing.pipelines import tiny_tokenizer

__all__ = ["tiny_chroma", "tiny_flux", "tiny_sd3"]

_LATENT_CHANNELS: Final = 16
_T5_LENGTH: Final = 64
_TEXT_WIDTH: Final = 32


def _t5(width: int = _TEXT_WIDTH) -> tuple[Any, Any]:
    tokenizer = byte_tokenizer(
        "PreTrainedTokenizerFast",
        ["<pad>", "</s>", "<unk>"],
        max_length=_T5_LENGTH,
        roles={"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
    )
    t5 = transformers()
    config = t5.T5Config(
        vocab_size=len(tokenizer),
        d_model=width,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return tokenizer, t5.T5EncoderModel(config)


def _clip(*, projection: bool) -> Any:
    from nostr_imagegen.testing.pipelines import _text_encoder

    return _text_encoder(_TEXT_WIDTH, projection=projection)


def _flow_scheduler(**config: Any) -> Any:
    return diffusers().FlowMatchEulerDiscreteScheduler(**config)


def _flux_vae() -> Any:
    # FLUX's VAE: no quant convs, latents shifted and scaled before the transformer.
    return tiny_vae(
        latent_channels=_LATENT_CHANNELS,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def tiny_flux() -> Any:
    """A random-weight ``FluxPipeline``."""
    t5_tokenizer, t5 = _t5()
    transformer = diffusers().FluxTransformer2DModel(
        patch_size=1,
        in_channels=_LATENT_CHANNELS * 4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=_TEXT_WIDTH,
        pooled_projection_dim=_TEXT_WIDTH,
        axes_dims_rope=(4, 6, 6),
    )
    return diffusers().FluxPipeline(
        scheduler=_flow_scheduler(),
        vae=_flux_vae(),
        text_encoder=_clip(projection=False),
        tokenizer=tiny_tokenizer(),
        text_encoder_2=t5,
        tokenizer_2=t5_tokenizer,
        transformer=redraw_linear_weights(transformer),
    )


def tiny_chroma() -> Any:
    """A random-weight ``ChromaPipeline``."""
    t5_tokenizer, t5 = _t5()
    transformer = diffusers().ChromaTransformer2DModel(
        patch_size=1,
        in_channels=_LATENT_CHANNELS * 4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=_TEXT_WIDTH,
        axes_dims_rope=(4, 6, 6),
        approximator_num_channels=16,
        approximator_hidden_dim=32,
        approximator_layers=1,
    )
    return diffusers().ChromaPipeline(
        scheduler=_flow_scheduler(),
        vae=_flux_vae(),
        text_encoder=t5,
        tokenizer=t5_tokenizer,
        transformer=redraw_linear_weights(transformer),
    )


def tiny_sd3() -> Any:
    """A random-weight ``StableDiffusion3Pipeline``."""
    # CLIP hidden states (two encoders concatenated) are zero-padded to T5's width.
    t5_tokenizer, t5 = _t5(width=_TEXT_WIDTH * 2)
    transformer = diffusers().SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=_LATENT_CHANNELS,
        out_channels=_LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=_TEXT_WIDTH * 2,
        caption_projection_dim=32,
        pooled_projection_dim=_TEXT_WIDTH * 2,
        pos_embed_max_size=64,
    )
    vae = tiny_vae(latent_channels=_LATENT_CHANNELS, shift_factor=0.0609, scaling_factor=1.5035)
    return diffusers().StableDiffusion3Pipeline(
        scheduler=_flow_scheduler(shift=3.0),
        vae=vae,
        text_encoder=_clip(projection=True),
        tokenizer=tiny_tokenizer(),
        text_encoder_2=_clip(projection=True),
        tokenizer_2=tiny_tokenizer(),
        text_encoder_3=t5,
        tokenizer_3=t5_tokenizer,
        transformer=redraw_linear_weights(transformer),
    )
