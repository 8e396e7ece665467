"""Tiny pipelines whose text encoder is a Qwen language model: Z-Image and FLUX.2 klein
(Qwen3), Qwen-Image (Qwen2.5-VL).

    ZImagePipeline       Qwen3 (hidden states of the second-to-last layer), 16-channel VAE
    Flux2KleinPipeline   Qwen3 with 28 layers: klein reads layers 9, 18 and 27; the FLUX.2
                         VAE (32 channels, 2x2 patches)
    QwenImagePipeline    Qwen2.5-VL (text only here), the Qwen-Image VAE (16 channels, 8x);
                         its prompt template's first 34 tokens are dropped from the embeddings
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

__all__ = ["tiny_flux2", "tiny_qwenimage", "tiny_zimage"]

_TEXT_WIDTH: Final = 16
_SPECIALS: Final = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
#: The ChatML layout Qwen tokenizers apply (``enable_thinking`` is accepted and ignored).
_CHAT_TEMPLATE: Final = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _qwen_tokenizer() -> Any:
    return byte_tokenizer(
        "PreTrainedTokenizerFast",
        _SPECIALS,
        max_length=1024,
        chat_template=_CHAT_TEMPLATE,
        roles={"pad_token": "<|endoftext|>", "eos_token": "<|im_end|>"},
    )


def _qwen3(vocab_size: int, *, layers: int, causal_lm: bool) -> Any:
    t = transformers()
    config = t.Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=_TEXT_WIDTH,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=1024,
    )
    return t.Qwen3ForCausalLM(config) if causal_lm else t.Qwen3Model(config)


def tiny_zimage() -> Any:
    """A random-weight ``ZImagePipeline``."""
    tokenizer = _qwen_tokenizer()
    transformer = diffusers().ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=_TEXT_WIDTH,
        axes_dims=[4, 6, 6],
        axes_lens=[256, 64, 64],
    )
    return diffusers().ZImagePipeline(
        scheduler=diffusers().FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(latent_channels=16, shift_factor=0.1159, scaling_factor=0.3611),
        text_encoder=_qwen3(len(tokenizer), layers=2, causal_lm=False),
        tokenizer=tokenizer,
        transformer=redraw_linear_weights(transformer),
    )


def tiny_flux2() -> Any:
    """A random-weight ``Flux2KleinPipeline`` (not guidance-distilled: it runs CFG)."""
    tokenizer = _qwen_tokenizer()
    d = diffusers()
    vae = d.AutoencoderKLFlux2(
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=32,
        norm_num_groups=8,
        sample_size=64,
    )
    transformer = d.Flux2Transformer2DModel(
        patch_size=1,
        in_channels=32 * 4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        # klein stacks the hidden states of three text-encoder layers.
        joint_attention_dim=_TEXT_WIDTH * 3,
        timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )
    return d.Flux2KleinPipeline(
        scheduler=d.FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=_qwen3(len(tokenizer), layers=28, causal_lm=True),
        tokenizer=tokenizer,
        transformer=redraw_linear_weights(transformer),
    )


def _qwen25_vl(vocab_size: int) -> Any:
    t = transformers()
    text = {
        "vocab_size": vocab_size,
        "hidden_size": _TEXT_WIDTH,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        # multimodal RoPE: its sections add up to half the head width (8 / 2).
        "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2]},
    }
    vision = {
        "depth": 1,
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_heads": 2,
        "out_hidden_size": _TEXT_WIDTH,
        "fullatt_block_indexes": [0],
    }
    config = t.Qwen2_5_VLConfig(text_config=text, vision_config=vision, vocab_size=vocab_size)
    return t.Qwen2_5_VLForConditionalGeneration(config)


def tiny_qwenimage() -> Any:
    """A random-weight ``QwenImagePipeline``."""
    tokenizer = _qwen_tokenizer()
    d = diffusers()
    vae = d.AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    transformer = d.QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16 * 4,
        out_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=_TEXT_WIDTH,
        axes_dims_rope=(4, 6, 6),
    )
    return d.QwenImagePipeline(
        scheduler=d.FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=_qwen25_vl(len(tokenizer)),
        tokenizer=tokenizer,
        transformer=redraw_linear_weights(transformer),
    )
