"""Where the engine runs and in which precision: the caller's choice, else the best available.

For example::

    select_device(None)        -> "cuda" if a CUDA GPU is visible, else "mps", else "cpu"
    select_device("cuda:1")    -> "cuda:1" (ConfigError when CUDA is not available)
    select_dtype("cuda", None) -> torch.float16;  select_dtype("cpu", None) -> torch.float32
"""

from __future__ import annotations

import logging
from typing import Final

import torch

from nostr_imagegen.errors import ConfigError

__all__ = ["generator_device", "select_device", "select_dtype"]

logger = logging.getLogger(__name__)

_DTYPES: Final[dict[str, torch.dtype]] = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(preferred: str | None = None) -> str:
    """The torch device string to run on: ``preferred`` when usable, else cuda, mps, cpu."""
    if preferred is None:
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    kind, _, index = preferred.partition(":")
    if kind == "cpu" and not index:
        return "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {preferred!r} was asked for but CUDA is not available")
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ConfigError(
                f"device {preferred!r}: there are {torch.cuda.device_count()} CUDA devices"
            )
        return preferred
    if kind == "mps" and not index:
        if not _mps_available():
            raise ConfigError("device 'mps' was asked for but MPS is not available")
        return "mps"
    raise ConfigError(f"device {preferred!r} is not one of cpu, mps, cuda, cuda:N")


def select_dtype(device: str, preferred: str | torch.dtype | None = None) -> torch.dtype:
    """Half precision on a GPU, float32 on the CPU, unless ``preferred`` says otherwise."""
    if isinstance(preferred, torch.dtype):
        return preferred
    if preferred is not None:
        try:
            dtype = _DTYPES[preferred.lower()]
        except KeyError:
            raise ConfigError(
                f"dtype {preferred!r} is not one of float16, bfloat16, float32"
            ) from None
        if device == "cpu" and dtype == torch.float16:
            # Many CPU kernels lack float16; it works but is slow, so say so once.
            logger.warning("float16 on the CPU is slow; float32 or bfloat16 are faster")
        return dtype
    return torch.float32 if device == "cpu" else torch.float16


def generator_device(device: str) -> str:
    """Where to put the seeded ``torch.Generator``: MPS generators are not reproducible, so
    noise for MPS is drawn on the CPU (diffusers moves it over)."""
    return "cpu" if device == "mps" else device
