"""Turn a generated image into the bytes that get uploaded: PNG, JPEG or WebP.

``encode_result`` is the one encode step for a served job, used by ``nostr-imagegen run``, the
service worker and embedding programs alike: it follows the ``[output]`` configuration and
the job's privacy::

    encoded = encode_result(job, result, config.output)   # one EncodedImage per image
    encoded[0].data, encoded[0].filename                  # bytes, "<sha256>.png"

``encode_image`` is the step underneath, for one image with explicit settings.

The customer picks the type with the request's ``output`` tag::

    ["output", "image/png"]      # the default when the tag is absent
    ["output", "image/jpeg"]     # also "jpeg", "jpg", "image/jpg"
    ["output", "image/webp"]     # also "webp"

Anything else is answered with ``JobRejected`` naming the supported types; without the tag
the type is ``[output] default_format``. ``Engine.plan`` checks it before anything is
generated (``output_type``).

Generation parameters (prompt, seed, model, LoRAs...) can ride along inside the file, so a
picture downloaded from a client still says how it was made (``[output] embed_metadata``).
**Never for an encrypted job**: its customer sent the prompt encrypted so that nobody else
reads it, and the image is published in the clear, so ``encode_result`` writes no metadata
at all for it, whatever the configuration says.

* PNG: one text chunk per key (``tEXt`` when the value is Latin-1, ``iTXt`` UTF-8 otherwise),
  the way Stable Diffusion front ends store their ``parameters`` chunk.
* JPEG and WebP: one EXIF ``UserComment`` (tag 0x9286 in the Exif IFD) holding a JSON object
  of the same keys, written as ``b"ASCII\\0\\0\\0"`` + ``json.dumps(..., ensure_ascii=True)``
  so it is unambiguous to every EXIF reader (no UTF-16 byte-order guessing).

Metadata is bounded (``MAX_METADATA_ENTRIES`` keys, ``MAX_METADATA_VALUE_CHARS`` per value,
``MAX_METADATA_BYTES`` in all) so one long prompt cannot blow the 64 KiB JPEG segment, and any
token that looks like a filesystem path is replaced by ``<path>``: an operator's disk layout is
never published. The result is named by content: ``<sha256>.<extension>``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from PIL import Image, PngImagePlugin

from nostr_imagegen.engine_config import OutputConfig
from nostr_imagegen.errors import ConfigError, EngineError, JobRejected
from nostr_imagegen.imagejob.model import ImageJob

__all__ = [
    "MAX_METADATA_BYTES",
    "MAX_METADATA_ENTRIES",
    "MAX_METADATA_VALUE_CHARS",
    "SUPPORTED_OUTPUT_TYPES",
    "Encodable",
    "EncodedImage",
    "SelfDescribing",
    "embedded_metadata",
    "encode_image",
    "encode_result",
    "normalize_output_type",
    "output_type",
]

logger = logging.getLogger(__name__)

#: The MIME types ``encode_image`` writes, the default first.
SUPPORTED_OUTPUT_TYPES: Final[tuple[str, ...]] = ("image/png", "image/jpeg", "image/webp")

MAX_METADATA_ENTRIES: Final = 16
MAX_METADATA_VALUE_CHARS: Final = 4096
#: Budget for all metadata together, measured as the ASCII JSON written into EXIF; keeps the
#: JPEG APP1 segment (at most 65,533 bytes) far from its limit.
MAX_METADATA_BYTES: Final = 32 * 1024

_ALIASES: Final[dict[str, str]] = {
    "png": "image/png",
    "image/png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "image/jpeg": "image/jpeg",
    "image/jpg": "image/jpeg",
    "webp": "image/webp",
    "image/webp": "image/webp",
}
_EXTENSIONS: Final[dict[str, str]] = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
}
_PIL_FORMATS: Final[dict[str, str]] = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/webp": "WEBP",
}

# A PNG keyword is 1-79 Latin-1 characters; we keep to a plain identifier subset.
_KEY_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
# Tokens that name a place on a disk: /abs, ~/home, ./rel, ../up, C:\ or C:/, \\share, file:
_PATH_TOKEN_RE: Final = re.compile(
    r"""(?<![\w/\\])(?:file:\S*|~[\w.-]*[/\\]\S*|\.{1,2}[/\\]\S*|[A-Za-z]:[/\\]\S*|\\\\\S+|/[^\s/]+/\S*)""",
    re.IGNORECASE,
)
_EXIF_IFD: Final = 0x8769
_EXIF_USER_COMMENT: Final = 0x9286
_ASCII_PREFIX: Final = b"ASCII\x00\x00\x00"


@dataclass(frozen=True)
class EncodedImage:
    """An encoded image ready to upload; ``filename`` is ``<sha256>.<extension>``."""

    data: bytes
    #: ``image/png``, ``image/jpeg`` or ``image/webp``.
    mime: str
    #: Lower-case hex sha256 of ``data``: the Blossom blob id and the NIP-92 ``x`` value.
    sha256: str
    width: int
    height: int
    #: ``png``, ``jpg`` or ``webp``, without the dot.
    extension: str

    @property
    def filename(self) -> str:
        """The content-addressed file name: ``"<sha256>.<extension>"``."""
        return f"{self.sha256}.{self.extension}"

    def __repr__(self) -> str:
        # The bytes would flood a log line; the hash names them.
        return (
            f"EncodedImage(mime={self.mime!r}, sha256={self.sha256!r}, "
            f"size={len(self.data)}, width={self.width}, height={self.height})"
        )


def normalize_output_type(mime: str | None) -> str:
    """Map an ``output`` value to one of ``SUPPORTED_OUTPUT_TYPES``.

    ``None`` means PNG; short forms (``"jpg"``, ``"webp"``) and any letter case are accepted.
    Anything else raises ``JobRejected`` carrying the ``["output", mime]`` tag.
    """
    if mime is None:
        return SUPPORTED_OUTPUT_TYPES[0]
    # Parameters such as "; charset=" mean nothing for images; ignore them.
    key = mime.split(";", 1)[0].strip().lower()
    try:
        return _ALIASES[key]
    except KeyError:
        raise JobRejected(
            f"output type {mime[:64]!r} is not supported; use one of "
            + ", ".join(SUPPORTED_OUTPUT_TYPES),
            tag=("output", mime),
        ) from None


class Encodable(Protocol):
    """What ``encode_result`` needs of a generation: ``GenerationResult`` (or a stand-in)."""

    @property
    def images(self) -> Sequence[Image.Image]: ...
    @property
    def seed(self) -> int: ...
    @property
    def model(self) -> str: ...


@runtime_checkable
class SelfDescribing(Protocol):
    """A generation that says how it was made (``GenerationResult.metadata()``)."""

    def metadata(self) -> Mapping[str, str]: ...


def output_type(job: ImageJob, output: OutputConfig) -> str:
    """The MIME type ``job``'s images are written as: its ``output`` tag, else
    ``output.default_format``. Raises ``JobRejected`` (with the ``output`` tag) for a type
    this encoder cannot write."""
    return normalize_output_type(job.output or f"image/{output.default_format}")


def embedded_metadata(
    job: ImageJob, result: Encodable, output: OutputConfig
) -> dict[str, str] | None:
    """What goes inside the files of ``job``: None unless ``output.embed_metadata``, and
    always None for an encrypted job (nothing of it may be published in the clear).

    A ``SelfDescribing`` result gives its own description (prompt, seed, model, steps,
    guidance, sizes, LoRAs...); any other gives the prompt, negative prompt, seed and model.
    """
    if not output.embed_metadata or job.encrypted:
        return None
    if isinstance(result, SelfDescribing):
        return dict(result.metadata())
    metadata = {"prompt": job.prompt, "seed": str(result.seed), "model": result.model}
    if job.negative_prompt:
        metadata["negative_prompt"] = job.negative_prompt
    return metadata


def encode_result(
    job: ImageJob, result: Encodable, output: OutputConfig | None = None
) -> list[EncodedImage]:
    """Encode every image of ``result`` (generated for ``job``) as the ``[output]``
    configuration says: the job's type or ``default_format``, at ``quality``, with
    ``embedded_metadata`` (none for an encrypted job). ``output`` None: the defaults (PNG,
    quality 90, no metadata). Raises ``JobRejected`` for an output type not written here
    and ``EngineError`` for a result without images."""
    settings = output if output is not None else OutputConfig()
    mime = output_type(job, settings)
    metadata = embedded_metadata(job, result, settings)
    encoded = [
        encode_image(image, mime, metadata=metadata, quality=settings.quality)
        for image in result.images
    ]
    if not encoded:
        raise EngineError("the engine returned no image")
    return encoded


def encode_image(
    image: Image.Image,
    mime: str | None = None,
    *,
    metadata: Mapping[str, str] | None = None,
    quality: int = 90,
) -> EncodedImage:
    """Encode ``image`` as PNG (default), JPEG or WebP, with optional metadata.

    ``quality`` (1-100) applies to JPEG and WebP. ``metadata`` keys must be identifiers
    (``prompt``, ``seed``, ``negative_prompt``, ``model``, ``loras``...); values are bounded and
    scrubbed of path-like tokens before they are written. The caller's image is not modified.
    """
    target = normalize_output_type(mime)
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ConfigError(f"image quality must be an integer from 1 to 100, got {quality!r}")
    entries = _bounded_metadata(metadata) if metadata else {}

    if target == "image/png":
        data = _encode_png(image, entries)
    else:
        data = _encode_lossy(image, target, entries, quality)
    return EncodedImage(
        data=data,
        mime=target,
        sha256=hashlib.sha256(data).hexdigest(),
        width=image.width,
        height=image.height,
        extension=_EXTENSIONS[target],
    )


def _encode_png(image: Image.Image, entries: Mapping[str, str]) -> bytes:
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    info: PngImagePlugin.PngInfo | None = None
    if entries:
        info = PngImagePlugin.PngInfo()
        for key, value in entries.items():
            # Pillow writes tEXt for Latin-1 text and falls back to UTF-8 iTXt otherwise.
            info.add_text(key, value)
    buffer = io.BytesIO()
    # The ICC profile of an input image is colour data, not metadata: keep it; nothing else
    # from image.info (text chunks of a customer's upload) is copied.
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _encode_lossy(
    image: Image.Image, target: str, entries: Mapping[str, str], quality: int
) -> bytes:
    has_alpha = "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)
    if target == "image/jpeg":
        if has_alpha:
            # JPEG has no alpha: flatten onto white rather than let transparent pixels show
            # whatever colour they happen to hold.
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            image = flat
        elif image.mode not in ("RGB", "L", "CMYK"):
            image = image.convert("RGB")
    elif image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if has_alpha else "RGB")

    options: dict[str, object] = {"quality": quality}
    if entries:
        options["exif"] = _exif_user_comment(entries)
    buffer = io.BytesIO()
    image.save(buffer, format=_PIL_FORMATS[target], **options)
    return buffer.getvalue()


def _exif_user_comment(entries: Mapping[str, str]) -> bytes:
    exif = Image.Exif()
    payload = json.dumps(dict(entries), ensure_ascii=True, separators=(",", ":"))
    exif.get_ifd(_EXIF_IFD)[_EXIF_USER_COMMENT] = _ASCII_PREFIX + payload.encode("ascii")
    return exif.tobytes()


def _scrub_paths(value: str) -> str:
    return _PATH_TOKEN_RE.sub("<path>", value)


def _bounded_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Validate keys, scrub path-like tokens and fit everything within the size budget."""
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise ValueError(
            f"at most {MAX_METADATA_ENTRIES} metadata entries may be embedded, got {len(metadata)}"
        )
    entries: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError(f"metadata key {key!r} is not an identifier of 1-64 characters")
        if not isinstance(value, str):
            raise TypeError(f"metadata value for {key!r} must be str, got {type(value).__name__}")
        # NUL ends a tEXt value early in some readers; other control characters are noise.
        text = "".join(ch for ch in value if ch in "\t\n" or ch >= " ")
        scrubbed = _scrub_paths(text)
        if scrubbed != text:
            logger.warning("metadata %r held a path-like token; replaced it by <path>", key)
        entries[key] = _truncate(scrubbed, MAX_METADATA_VALUE_CHARS)

    # Shrink the longest value until the whole set fits; deterministic for equal input.
    while _json_size(entries) > MAX_METADATA_BYTES:
        longest = max(entries, key=lambda k: (len(entries[k]), k))
        entries[longest] = _truncate(entries[longest], len(entries[longest]) // 2)
    return entries


def _truncate(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return value[: max(limit - 1, 0)] + "…"


def _json_size(entries: Mapping[str, str]) -> int:
    return len(json.dumps(dict(entries), ensure_ascii=True, separators=(",", ":")))
