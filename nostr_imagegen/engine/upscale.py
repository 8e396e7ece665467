"""Make a generated image bigger: Lanczos (built in) or a learned Real-ESRGAN-family model.

A job asks for it with the legacy ``upscale`` param (the first kind 5100 text; newer clients
ask for a ``size`` instead)::

    ["param", "upscale", "2"]

``upscale_image(image, 2.0)`` returns an image of ``(round(w * 2), round(h * 2))`` pixels.
The factor is bounded (``MAX_UPSCALE_FACTOR``, ``MAX_UPSCALED_PIXELS``); a factor the engine
will not produce raises ``JobRejected`` with a reason for the customer.

Learned upscalers are loaded through spandrel, an optional dependency installed with
``pip install --no-deps spandrel einops`` (its declared torchvision requirement would pull a
CUDA torch onto CPU machines). spandrel is imported without torchvision by
``spandrel_import.import_spandrel``: the Real-ESRGAN family never uses it.

Big images are upscaled tile by tile so memory stays bounded: the input is cut into tiles of
``tile_size`` pixels, each read with ``tile_overlap`` extra pixels of context on every side,
run through the model, and only the tile's own region (scaled) is written into the output
canvas. With an overlap at least as large as the network's receptive radius the result equals
the untiled one; real Real-ESRGAN models reach further, and 16-32 pixels hide the seams.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from PIL import Image

from nostr_imagegen.errors import ConfigError, EngineError, JobRejected

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

__all__ = [
    "MAX_UPSCALED_PIXELS",
    "MAX_UPSCALE_FACTOR",
    "LanczosUpscaler",
    "SpandrelUpscaler",
    "Upscaler",
    "upscale_image",
    "upscaled_size",
]

logger = logging.getLogger(__name__)

MAX_UPSCALE_FACTOR: Final = 4.0
#: 4096 x 4096: a 1024 x 1024 image at 4x, the largest output one job may ask for.
MAX_UPSCALED_PIXELS: Final = 4096 * 4096
_FACTOR_EPSILON: Final = 1e-6


@runtime_checkable
class Upscaler(Protocol):
    """Anything that enlarges an image by a factor > 1 to ``upscaled_size(image, factor)``."""

    def upscale(self, image: Image.Image, factor: float) -> Image.Image:
        """Return a new image ``factor`` times larger on each side; ``image`` is not modified."""
        ...


class LanczosUpscaler:
    """Pillow's Lanczos resampling: no model, no torch, fast and a little soft."""

    def upscale(self, image: Image.Image, factor: float) -> Image.Image:
        """Resize ``image`` to ``upscaled_size(image, factor)`` with ``Image.LANCZOS``."""
        return image.resize(upscaled_size(image, factor), Image.Resampling.LANCZOS)

    def __repr__(self) -> str:
        return "LanczosUpscaler()"


def upscaled_size(image: Image.Image, factor: float) -> tuple[int, int]:
    """``(round(width * factor), round(height * factor))``, each at least 1."""
    return max(1, round(image.width * factor)), max(1, round(image.height * factor))


def upscale_image(
    image: Image.Image,
    factor: float,
    upscaler: Upscaler | None = None,
    *,
    max_factor: float = MAX_UPSCALE_FACTOR,
    max_pixels: int = MAX_UPSCALED_PIXELS,
) -> Image.Image:
    """Return ``image`` enlarged ``factor`` times with ``upscaler`` (Lanczos by default).

    A factor of 1 returns a copy. Factors below 1, above ``max_factor``, not finite, or that
    would produce more than ``max_pixels`` pixels raise ``JobRejected``.
    """
    _check_factor(image, factor, max_factor=max_factor, max_pixels=max_pixels)
    if abs(factor - 1.0) < _FACTOR_EPSILON:
        return image.copy()
    chosen: Upscaler = upscaler if upscaler is not None else LanczosUpscaler()
    result = chosen.upscale(image, factor)
    expected = upscaled_size(image, factor)
    if result.size != expected:
        raise EngineError(
            f"{type(chosen).__name__} returned {result.size[0]}x{result.size[1]}, "
            f"expected {expected[0]}x{expected[1]}"
        )
    return result


def _check_factor(image: Image.Image, factor: float, *, max_factor: float, max_pixels: int) -> None:
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not math.isfinite(factor):
        raise JobRejected(f"upscale factor must be a number, got {factor!r}")
    if factor < 1.0 - _FACTOR_EPSILON or factor > max_factor + _FACTOR_EPSILON:
        raise JobRejected(f"upscale factor {factor:g} is out of range; use 1 to {max_factor:g}")
    width, height = upscaled_size(image, factor)
    if width * height > max_pixels:
        raise JobRejected(
            f"upscaling {image.width}x{image.height} by {factor:g} gives {width}x{height}, "
            f"more than the {max_pixels:,} pixels this provider produces"
        )


class SpandrelUpscaler:
    """A learned upscaler (Real-ESRGAN RRDBNet, SRVGGNetCompact, SwinIR...) loaded by spandrel.

    ``weights`` is an operator-configured ``.safetensors`` (preferred) or ``.pth`` file. The
    model's native scale (2x, 4x) is applied as many times as needed to reach the factor, then
    Lanczos shrinks the result to the exact size (shrinking a sharp image loses less than
    enlarging a soft one). ``device``/``dtype`` are the caller's choice; half precision is
    refused for architectures that do not support it.
    """

    def __init__(
        self,
        weights: Path,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        tile_size: int = 256,
        tile_overlap: int = 16,
    ) -> None:
        if tile_size < 16:
            raise ConfigError(f"upscaler tile_size must be at least 16 pixels, got {tile_size}")
        if not 0 <= tile_overlap <= tile_size:
            raise ConfigError(
                f"upscaler tile_overlap must be 0 to tile_size ({tile_size}), got {tile_overlap}"
            )
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self._name = Path(weights).name
        self._model = _load_spandrel_model(Path(weights), device=device, dtype=dtype)

    @property
    def scale(self) -> int:
        """The model's native scale factor (2 or 4 for Real-ESRGAN models)."""
        return int(self._model.scale)

    def __repr__(self) -> str:
        # The file name, not the path: reprs end up in logs.
        return (
            f"SpandrelUpscaler({self._name!r}, architecture={self._model.architecture.name!r}, "
            f"scale={self.scale}, tile_size={self.tile_size}, tile_overlap={self.tile_overlap})"
        )

    def upscale(self, image: Image.Image, factor: float) -> Image.Image:
        """Enlarge ``image`` to ``upscaled_size(image, factor)`` with the model, then Lanczos."""
        target = upscaled_size(image, factor)
        passes = _passes_needed(factor, self.scale)
        alpha = image.getchannel("A") if "A" in image.getbands() else None
        current = image.convert("RGB")
        for _ in range(passes):
            current = self._run_tiled(current)
        if current.size != target:
            current = current.resize(target, Image.Resampling.LANCZOS)
        if alpha is not None:
            # Models see RGB only; transparency is resized the plain way.
            current.putalpha(alpha.resize(target, Image.Resampling.LANCZOS))
        return current

    def _run_tiled(self, image: Image.Image) -> Image.Image:
        import numpy as np
        import torch

        model = self._model
        scale = self.scale
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        height, width = pixels.shape[:2]
        out = np.empty((height * scale, width * scale, 3), dtype=np.uint8)
        size, overlap = self.tile_size, self.tile_overlap
        try:
            with torch.inference_mode():
                for top in range(0, height, size):
                    for left in range(0, width, size):
                        bottom, right = min(top + size, height), min(left + size, width)
                        # Read the tile with `overlap` pixels of context, clipped at the edges.
                        ctop, cleft = max(top - overlap, 0), max(left - overlap, 0)
                        cbottom, cright = min(bottom + overlap, height), min(right + overlap, width)
                        tile = _to_tensor(pixels[ctop:cbottom, cleft:cright], model)
                        result = model(tile)
                        # Keep only the tile's own region of the scaled output.
                        y0, x0 = (top - ctop) * scale, (left - cleft) * scale
                        y1, x1 = y0 + (bottom - top) * scale, x0 + (right - left) * scale
                        out[top * scale : bottom * scale, left * scale : right * scale] = _to_uint8(
                            result[0, :, y0:y1, x0:x1]
                        )
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"upscaler {self._name!r} failed: {exc}") from exc
        return Image.fromarray(out, mode="RGB")


def _passes_needed(factor: float, scale: int) -> int:
    """How many applications of a ``scale``-x model reach ``factor`` (at least one)."""
    passes, reached = 1, scale
    while reached < factor - _FACTOR_EPSILON:
        passes += 1
        reached *= scale
    return passes


def _to_tensor(pixels: npt.NDArray[np.float32], model: Any) -> torch.Tensor:
    import numpy as np
    import torch

    chw = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    return torch.from_numpy(chw).unsqueeze(0).to(device=model.device, dtype=model.dtype)


def _to_uint8(chw: torch.Tensor) -> npt.NDArray[np.uint8]:
    import numpy as np

    hwc = chw.float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.asarray(hwc, dtype=np.uint8)


def _load_spandrel_model(weights: Path, *, device: str, dtype: torch.dtype | None) -> Any:
    """Load ``weights`` with spandrel as a super-resolution model, or raise ``ConfigError``."""
    from nostr_imagegen.engine.spandrel_import import import_spandrel

    try:
        spandrel = import_spandrel()
    except ImportError as exc:
        raise ConfigError(
            "the learned upscaler needs spandrel: `pip install --no-deps spandrel einops` "
            f"(see docs/upscaling-and-output.md); import failed: {exc}"
        ) from exc
    if not weights.is_file():
        raise ConfigError(f"upscaler weights {weights.name!r} do not exist or are not a file")
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_file(weights)
    except Exception as exc:  # spandrel raises ValueError, UnsupportedModelError, torch errors
        raise ConfigError(f"cannot load upscaler weights {weights.name!r}: {exc}") from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose != "SR":
        raise ConfigError(
            f"upscaler weights {weights.name!r} are a {descriptor.architecture.name} "
            f"{descriptor.purpose} model, not a super-resolution model"
        )
    if descriptor.input_channels != 3 or descriptor.output_channels != 3 or descriptor.scale < 2:
        raise ConfigError(
            f"upscaler weights {weights.name!r} must map RGB to RGB at 2x or more "
            f"(got {descriptor.input_channels}->{descriptor.output_channels} channels, "
            f"{descriptor.scale}x)"
        )
    try:
        descriptor.to(device)
        if dtype is not None:
            descriptor.to(dtype)
    except Exception as exc:  # UnsupportedDtypeError, unknown device
        raise ConfigError(f"cannot place upscaler {weights.name!r} on {device}: {exc}") from exc
    descriptor.eval()
    logger.info(
        "loaded upscaler %s: %s %dx on %s",
        weights.name,
        descriptor.architecture.name,
        descriptor.scale,
        device,
    )
    return descriptor
