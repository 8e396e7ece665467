"""A tiny Sana pipeline: a Gemma 2 text encoder, a linear-attention transformer, and a deep
compression autoencoder (``AutoencoderDC``) that divides each side by 32 into 32 channels,
like the real one.
"""

from __future__ import annotations

from typing import Any, Final

from nostr_imagegen.testing.families._parts import (
    byte_tokenizer,
    diffusers,
    redraw_linear_weights,
    transformers,
)

__all__ = ["tiny_sana"]

_TEXT_WIDTH: Final = 16
_LATENT_CHANNELS: Final = 32
#: Six levels: five halvings, 32x like Sana's DC-AE; the deepest as wide as the latents
#: (the decoder's input shortcut repeats latent channels up to it).
_DC_WIDTHS: Final = (8, 8, 8, 16, 32, 32)


def _gemma2() -> tuple[Any, Any]:
    tokenizer = byte_tokenizer(
        "PreTrainedTokenizerFast",
        ["<pad>", "<eos>", "<bos>"],
        max_length=512,
        roles={"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>"},
    )
    t = transformers()
    config = t.Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_WIDTH,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer, t.Gemma2Model(config)


def tiny_sana() -> Any:
    """A random-weight ``SanaPipeline``."""
    d = diffusers()
    tokenizer, text_encoder = _gemma2()
    levels = len(_DC_WIDTHS)
    vae = d.AutoencoderDC(
        in_channels=3,
        latent_channels=_LATENT_CHANNELS,
        attention_head_dim=4,
        encoder_block_types="ResBlock",
        decoder_block_types="ResBlock",
        encoder_block_out_channels=_DC_WIDTHS,
        decoder_block_out_channels=_DC_WIDTHS,
        encoder_layers_per_block=(1,) * levels,
        decoder_layers_per_block=(1,) * levels,
        encoder_qkv_multiscales=((),) * levels,
        decoder_qkv_multiscales=((),) * levels,
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    transformer = d.SanaTransformer2DModel(
        patch_size=1,
        in_channels=_LATENT_CHANNELS,
        out_channels=_LATENT_CHANNELS,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=_TEXT_WIDTH,
        sample_size=2,
    )
    scheduler = d.DPMSolverMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    return d.SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=redraw_linear_weights(transformer),
        scheduler=scheduler,
    )
