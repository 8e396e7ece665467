"""Tiny random-weight Stable Diffusion pipelines: a model that needs no download.

They draw noise-like pictures, but they go through exactly the code a real model does: each
is saved with ``save_pretrained`` and loaded back by the real diffusers loaders.

    >>> folder = build_tiny_pipeline(Path("/tmp/tiny-sd15"))                  # SD 1.5 layout
    >>> xl = build_tiny_pipeline(Path("/tmp/tiny-sdxl"), ModelFamily.SDXL)

Shapes (what DESIGN.md calls the offline test model): UNet ``block_out_channels`` (32, 64),
one layer per block, cross-attention width 32 (96 for SDXL: its text encoders of 32 and 64
concatenated); a four-block VAE, so latents are 1/8 of the image like real Stable Diffusion;
CLIP text encoders of hidden size 32 (SDXL's second: 64); a byte-level CLIP tokenizer built in
memory (no merges). Their native size is ``TINY_NATIVE_SIZE`` (64 pixels). ``wider=True``
builds the SD 1.5 block layout (four levels, two layers per block) at reduced widths, for
benchmarks that want a realistic shape at 512x512 (native size ``WIDER_NATIVE_SIZE``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from nostr_imagegen.imagejob.dimensions import ModelFamily

__all__ = [
    "TINY_NATIVE_SIZE",
    "WIDER_NATIVE_SIZE",
    "build_tiny_pipeline",
    "seeded",
    "tiny_tokenizer",
]

logger = logging.getLogger(__name__)

#: Side length tiny pipelines are configured for (the engine's ``native_size`` override).
TINY_NATIVE_SIZE: Final = 64
#: Native side of the ``wider`` benchmark model (an SD 1.5 shape at reduced widths).
WIDER_NATIVE_SIZE: Final = 512

_TINY_WIDTHS: Final = (32, 64)
_WIDER_WIDTHS: Final = (16, 32, 64, 64)
_START, _END = "<|startoftext|>", "<|endoftext|>"


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw from torch's global generator seeded with ``seed``, and put its state back after:
    the weights the model constructors draw depend on ``seed`` alone, and the caller's random
    stream is left as it was."""
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


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
    widths: Sequence[int],
    *,
    layers: int,
    cross_attention_dim: int,
    sdxl: bool,
    text_dim: int,
    linear_projection: bool = False,
) -> Any:
    UNet2DConditionModel = _diffusers().UNet2DConditionModel

    levels = len(widths)
    # The SD layout: cross-attention on every level but the deepest.
    down = tuple("CrossAttnDownBlock2D" if i < levels - 1 else "DownBlock2D" for i in range(levels))
    up = tuple("UpBlock2D" if i == 0 else "CrossAttnUpBlock2D" for i in range(levels))
    extra: dict[str, Any] = {"use_linear_projection": True} if linear_projection else {}
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


def _scheduler(prediction_type: str = "epsilon") -> Any:
    EulerDiscreteScheduler = _diffusers().EulerDiscreteScheduler

    # Stable Diffusion's training noise schedule.
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type=prediction_type,
    )


def build_tiny_pipeline(
    folder: Path,
    family: ModelFamily = ModelFamily.SD15,
    *,
    seed: int = 0,
    widths: Sequence[int] | None = None,
    wider: bool = False,
) -> Path:
    """Build a random-weight pipeline of ``family`` (SD 1.5, SD 2 or SDXL) and save it into
    ``folder``. SD 2 is the SD 1.5 layout with SD 2's v-prediction and linear projections.

    ``widths`` are the UNet's ``block_out_channels`` (default (32, 64), or (16, 32, 64, 64)
    with ``wider``); ``wider`` also gives two layers per block and a text encoder of width 64:
    the SD 1.5 layout (attention at the three upper levels) at under 1% of its weights.
    At 512x512 on one core of the 2-core development machine a ``wider`` model takes about
    0.25 s per denoising step without guidance (twice that with it) plus 0.3 s for the VAE
    decode: about a second for a 3-4 step image. The same ``seed`` gives the same
    weights. Returns ``folder``, loadable with ``DiffusionPipeline.from_pretrained``.
    """
    diffusers = _diffusers()

    if family not in (ModelFamily.SD15, ModelFamily.SD2, ModelFamily.SDXL):
        raise ValueError(
            f"build_tiny_pipeline builds sd15, sd2 and sdxl, not {family.value}; "
            "build_tiny_family builds every family"
        )
    unet_widths = (
        tuple(widths) if widths is not None else (_WIDER_WIDTHS if wider else _TINY_WIDTHS)
    )
    if any(width <= 0 or width % 8 for width in unet_widths) or len(unet_widths) < 2:
        raise ValueError(f"widths must be at least two multiples of 8, got {unet_widths}")
    text_hidden = 64 if wider else 32
    vae_widths = (8, 16, 16, 16) if wider else (8, 8, 16, 16)
    layers = 2 if wider else 1
    sdxl = family is ModelFamily.SDXL
    sd2 = family is ModelFamily.SD2
    folder = Path(folder)

    with seeded(seed):
        tokenizer = tiny_tokenizer()
        text_encoder = _text_encoder(text_hidden, projection=False)
        if sdxl:
            # Wider than the first encoder, as in real SDXL (768 and 1280): diffusers'
            # single-file loader tells the two apart by width, so equal widths would load the
            # first encoder's weights into the second.
            text_hidden_2 = 2 * text_hidden
            text_encoder_2 = _text_encoder(text_hidden_2, projection=True)
            pipeline: Any = diffusers.StableDiffusionXLPipeline(
                vae=_vae(vae_widths),
                text_encoder=text_encoder,
                text_encoder_2=text_encoder_2,
                tokenizer=tokenizer,
                tokenizer_2=tiny_tokenizer(),
                unet=_unet(
                    unet_widths,
                    layers=layers,
                    cross_attention_dim=text_hidden + text_hidden_2,
                    sdxl=True,
                    text_dim=text_hidden_2,
                ),
                scheduler=_scheduler(),
            )
        else:
            unet = _unet(
                unet_widths,
                layers=layers,
                cross_attention_dim=text_hidden,
                sdxl=False,
                text_dim=text_hidden,
                linear_projection=sd2,
            )
            pipeline = diffusers.StableDiffusionPipeline(
                vae=_vae(vae_widths),
                text_encoder=text_encoder,
                tokenizer=tokenizer,
                unet=unet,
                scheduler=_scheduler("v_prediction" if sd2 else "epsilon"),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
    pipeline.save_pretrained(folder)
    logger.debug("tiny %s pipeline saved in %s", family.value, folder)
    return folder
