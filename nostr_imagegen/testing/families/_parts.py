"""Parts the tiny family builders share: in-memory tokenizers, a VAE with the real
compression, and the weight re-draw that makes a random transformer react to its inputs.

Tokenizers are byte-level BPE models without merges over the 256 byte characters plus the
special tokens a pipeline needs: every byte of a prompt is one token, so any prompt works,
and nothing is read from the hub.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from nostr_imagegen.testing.pipelines import _bytes_to_unicode

__all__ = ["byte_tokenizer", "diffusers", "redraw_linear_weights", "tiny_vae", "transformers"]


def diffusers() -> Any:
    return importlib.import_module("diffusers")


def transformers() -> Any:
    return importlib.import_module("transformers")


def byte_tokenizer(
    tokenizer_class: str,
    specials: Sequence[str],
    *,
    max_length: int,
    roles: Mapping[str, str],
    chat_template: str | None = None,
) -> Any:
    """A ``tokenizer_class`` (a transformers fast tokenizer name) over the byte alphabet and
    ``specials`` (ids right after the 256 bytes). ``roles`` names them
    (``{"eos_token": "</s>"}``); ``chat_template`` is set for pipelines that apply one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {char: index for index, char in enumerate(_bytes_to_unicode())}
    for token in specials:
        vocab[token] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(specials))
    cls = getattr(transformers(), tokenizer_class)
    tokenizer = cls(tokenizer_object=backend, model_max_length=max_length, **roles)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def tiny_vae(*, latent_channels: int, widths: Sequence[int] = (8, 8, 16, 16), **extra: Any) -> Any:
    """An ``AutoencoderKL`` with four blocks (8x, like the real ones) and ``latent_channels``."""
    return diffusers().AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(widths),
        up_block_types=("UpDecoderBlock2D",) * len(widths),
        block_out_channels=tuple(widths),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=64,
        **extra,
    )


def redraw_linear_weights(module: Any) -> Any:
    """Re-draw every ``Linear`` weight of ``module`` from N(0, 1/fan_in).

    PyTorch's default init (uniform, variance 1/(3 fan_in)) leaves a tiny random transformer
    all but deaf to its text input: a prompt, negative prompt or LoRA moves a pixel by a
    grey level or two. Unit-variance activations carry the conditioning through, so a test
    can see the difference. Returns ``module``.
    """
    import torch

    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, 1.0 / math.sqrt(layer.in_features))
    return module
