"""encode_image: PNG / JPEG / WebP bytes, content-addressed names, bounded metadata; and
encode_result, the encode step of a served job: the [output] settings and the job's privacy."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from _engine_support import CUSTOMER, PROMPT, MakeJob
from PIL import Image

from nostr_imagegen.engine.encode import (
    MAX_METADATA_BYTES,
    MAX_METADATA_ENTRIES,
    MAX_METADATA_VALUE_CHARS,
    SUPPORTED_OUTPUT_TYPES,
    EncodedImage,
    embedded_metadata,
    encode_image,
    encode_result,
    normalize_output_type,
)
from nostr_imagegen.engine_config import OutputConfig
from nostr_imagegen.errors import ConfigError, EngineError, JobRejected
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.imagejob.request import parse_image_job
from nostr_imagegen.nostr.encryption import EncryptionScheme, encrypt
from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys

EXIF_IFD = 0x8769
USER_COMMENT = 0x9286


def _gradient(width: int = 48, height: int = 32, mode: str = "RGB") -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata(
        [(x * 5 % 256, y * 7 % 256, (x + y) % 256) for y in range(height) for x in range(width)]
    )
    return image.convert(mode) if mode != "RGB" else image


def _decode(encoded: EncodedImage) -> Image.Image:
    image = Image.open(io.BytesIO(encoded.data))
    image.load()
    return image


def _exif_metadata(image: Image.Image) -> dict[str, str] | None:
    comment = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    if comment is None:
        return None
    assert comment[:8] == b"ASCII\x00\x00\x00"
    decoded: dict[str, str] = json.loads(comment[8:].decode("ascii"))
    return decoded


METADATA = {
    "prompt": "a purple ostrich watching the sunset, ünïcødé ☀",
    "negative_prompt": "broken hands",
    "seed": "42",
    "model": "sd15",
    "loras": "pixel-art:0.8",
}


@pytest.mark.parametrize(
    ("mime", "expected_mime", "pil_format", "extension"),
    [
        (None, "image/png", "PNG", "png"),
        ("image/png", "image/png", "PNG", "png"),
        ("png", "image/png", "PNG", "png"),
        ("image/jpeg", "image/jpeg", "JPEG", "jpg"),
        ("jpeg", "image/jpeg", "JPEG", "jpg"),
        ("JPG", "image/jpeg", "JPEG", "jpg"),
        ("image/jpg", "image/jpeg", "JPEG", "jpg"),
        ("image/webp", "image/webp", "WEBP", "webp"),
        ("webp", "image/webp", "WEBP", "webp"),
    ],
)
def test_formats_round_trip(
    mime: str | None, expected_mime: str, pil_format: str, extension: str
) -> None:
    source = _gradient()
    encoded = encode_image(source, mime)

    assert encoded.mime == expected_mime
    assert encoded.extension == extension
    assert encoded.sha256 == hashlib.sha256(encoded.data).hexdigest()
    assert encoded.filename == f"{encoded.sha256}.{extension}"
    assert (encoded.width, encoded.height) == (48, 32)
    decoded = _decode(encoded)
    assert decoded.format == pil_format
    assert decoded.size == (48, 32)
    if pil_format == "PNG":
        # Lossless: every pixel comes back.
        assert decoded.convert("RGB").tobytes() == source.tobytes()


def test_lossy_formats_are_close_to_the_source() -> None:
    source = _gradient(64, 64)
    for mime in ("image/jpeg", "image/webp"):
        decoded = _decode(encode_image(source, mime, quality=95)).convert("RGB")
        diffs = [abs(a - b) for a, b in zip(decoded.tobytes(), source.tobytes(), strict=True)]
        assert sum(diffs) / len(diffs) < 12, mime


def test_quality_changes_lossy_output() -> None:
    source = _gradient(64, 64)
    low = encode_image(source, "image/jpeg", quality=10)
    high = encode_image(source, "image/jpeg", quality=95)
    assert len(low.data) < len(high.data)
    assert low.sha256 != high.sha256


def test_same_image_same_bytes_and_hash() -> None:
    first = encode_image(_gradient(), metadata=METADATA)
    second = encode_image(_gradient(), metadata=METADATA)
    assert first.data == second.data
    assert first.filename == second.filename


@pytest.mark.parametrize("mime", ["image/gif", "image/avif", "text/plain", "", "image/png2"])
def test_unsupported_output_is_rejected_naming_supported_types(mime: str) -> None:
    with pytest.raises(JobRejected) as caught:
        encode_image(_gradient(), mime)
    message = str(caught.value)
    for supported in SUPPORTED_OUTPUT_TYPES:
        assert supported in message
    assert caught.value.tag == ("output", mime)


def test_normalize_output_type_ignores_parameters_and_case() -> None:
    assert normalize_output_type(" Image/WebP ; q=1") == "image/webp"
    assert normalize_output_type(None) == "image/png"


@pytest.mark.parametrize("quality", [0, 101, -5, True, 9.5])
def test_bad_quality_is_a_config_error(quality: object) -> None:
    with pytest.raises(ConfigError):
        encode_image(_gradient(), "image/jpeg", quality=quality)  # type: ignore[arg-type]


def test_png_metadata_is_in_text_chunks() -> None:
    decoded = _decode(encode_image(_gradient(), metadata=METADATA))
    assert isinstance(decoded, Image.Image)
    text = decoded.text  # type: ignore[attr-defined]
    for key, value in METADATA.items():
        assert text[key] == value


@pytest.mark.parametrize("mime", ["image/jpeg", "image/webp"])
def test_lossy_metadata_is_json_in_exif_user_comment(mime: str) -> None:
    decoded = _decode(encode_image(_gradient(), mime, metadata=METADATA))
    assert _exif_metadata(decoded) == METADATA


@pytest.mark.parametrize("mime", ["image/png", "image/jpeg", "image/webp"])
def test_no_metadata_means_none_embedded(mime: str) -> None:
    decoded = _decode(encode_image(_gradient(), mime))
    assert _exif_metadata(decoded) is None
    assert not getattr(decoded, "text", {})


def test_input_image_text_chunks_are_not_copied() -> None:
    # A customer's img2img upload may carry its own text; it must not leak into our output.
    buffer = io.BytesIO()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("secret", "/home/customer/notes")
    _gradient().save(buffer, format="PNG", pnginfo=info)
    uploaded = Image.open(io.BytesIO(buffer.getvalue()))
    uploaded.load()
    decoded = _decode(encode_image(uploaded))
    assert "secret" not in decoded.text  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "kept", "removed"),
    [
        ("/home/operator/models/sd15", None, "/home/operator"),
        ("sd15 from C:\\models\\sd15.safetensors", "sd15 from", "C:\\models"),
        ("~/loras/pixel.safetensors", None, "~/loras"),
        ("./models/x and ../y/z", " and ", "./models"),
        ("file:///etc/passwd", None, "/etc/passwd"),
        ("a cat/dog at https://example.com/a/b.png, 1/2 scale", "a cat/dog at https", None),
    ],
)
@pytest.mark.parametrize("mime", ["image/png", "image/jpeg"])
def test_path_like_tokens_are_never_embedded(
    mime: str, value: str, kept: str | None, removed: str | None
) -> None:
    decoded = _decode(encode_image(_gradient(), mime, metadata={"model": value}))
    embedded = (
        decoded.text["model"]  # type: ignore[attr-defined]
        if mime == "image/png"
        else (_exif_metadata(decoded) or {})["model"]
    )
    if kept is not None:
        assert kept in embedded
    if removed is not None:
        assert removed not in embedded
        assert "<path>" in embedded
    else:
        assert embedded == value


def test_long_values_are_truncated() -> None:
    prompt = "x" * (MAX_METADATA_VALUE_CHARS * 3)
    decoded = _decode(encode_image(_gradient(), "image/png", metadata={"prompt": prompt}))
    embedded = decoded.text["prompt"]  # type: ignore[attr-defined]
    assert len(embedded) == MAX_METADATA_VALUE_CHARS
    assert embedded.endswith("…")


def test_total_metadata_fits_the_budget_even_with_many_non_ascii_values() -> None:
    # ensure_ascii turns each "☀" into six bytes: 16 x 4096 of them is ~390 KB unbounded.
    metadata = {f"k{i}": "☀" * MAX_METADATA_VALUE_CHARS for i in range(MAX_METADATA_ENTRIES)}
    decoded = _decode(encode_image(_gradient(), "image/jpeg", metadata=metadata))
    embedded = _exif_metadata(decoded)
    assert embedded is not None
    assert set(embedded) == set(metadata)
    assert len(json.dumps(embedded, separators=(",", ":"))) <= MAX_METADATA_BYTES


def test_too_many_entries_or_bad_keys_are_refused() -> None:
    many = {f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES + 1)}
    with pytest.raises(ValueError, match="at most"):
        encode_image(_gradient(), metadata=many)
    for key in ["", "has space", "x" * 65, "1digit", "ü"]:
        with pytest.raises(ValueError, match="identifier"):
            encode_image(_gradient(), metadata={key: "v"})


def test_control_characters_are_dropped() -> None:
    decoded = _decode(encode_image(_gradient(), metadata={"prompt": "a\x00b\x1bc\nd"}))
    assert decoded.text["prompt"] == "abc\nd"  # type: ignore[attr-defined]


def test_alpha_images() -> None:
    rgba = _gradient(mode="RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 0))  # fully transparent
    png = _decode(encode_image(rgba, "image/png"))
    assert png.mode == "RGBA"
    webp = _decode(encode_image(rgba, "image/webp"))
    assert webp.mode == "RGBA"
    # JPEG has no alpha: transparent pixels become white, not the hidden colour.
    jpeg = _decode(encode_image(rgba, "image/jpeg", quality=95)).convert("RGB")
    assert jpeg.mode == "RGB"
    assert min(jpeg.tobytes()) > 240


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16", "F"])
@pytest.mark.parametrize("mime", ["image/png", "image/jpeg", "image/webp"])
def test_other_modes_encode(mode: str, mime: str) -> None:
    image = _gradient().convert(mode)
    decoded = _decode(encode_image(image, mime))
    assert decoded.size == image.size


def test_caller_image_is_not_modified() -> None:
    image = _gradient(mode="RGBA")
    before = (image.mode, image.size, image.tobytes(), dict(image.info))
    encode_image(image, "image/jpeg", metadata=METADATA)
    assert (image.mode, image.size, image.tobytes(), dict(image.info)) == before


def test_repr_does_not_dump_bytes() -> None:
    encoded = encode_image(_gradient())
    assert len(repr(encoded)) < 200
    assert encoded.sha256 in repr(encoded)


# ----- encode_result: the encode step of a served job ----------------------------------------

PROVIDER = Keys.generate()


@dataclass(frozen=True)
class Generated:
    """A generation that does not describe itself (what a test double or another engine
    returns): only images, seed and model."""

    images: Sequence[Image.Image]
    seed: int = 42
    model: str = "tiny"


@dataclass(frozen=True)
class Described(Generated):
    def metadata(self) -> dict[str, str]:
        return {"prompt": PROMPT, "seed": str(self.seed), "model": self.model, "steps": "2"}


def encrypted_job(scheme: EncryptionScheme, output: str | None = None) -> ImageJob:
    secret = [["i", PROMPT, "text"], ["param", "negative_prompt", "blurry"], ["param", "seed", "7"]]
    content = encrypt(json.dumps(secret), CUSTOMER, PROVIDER.public_key, scheme)
    tags: list[tuple[str, ...]] = [("p", PROVIDER.public_key), ("encrypted",)]
    if output is not None:
        tags.append(("output", output))
    event = sign_event(UnsignedEvent(kind=5100, tags=tuple(tags), content=content), CUSTOMER)
    return parse_image_job(event, provider=PROVIDER)


EMBED = OutputConfig(embed_metadata=True)


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
@pytest.mark.parametrize("output", ["image/png", "image/jpeg", "image/webp"])
def test_an_encrypted_job_gets_no_metadata_whatever_the_config(
    scheme: EncryptionScheme, output: str
) -> None:
    job = encrypted_job(scheme, output)
    assert job.encrypted
    assert job.prompt == PROMPT  # decrypted: the prompt is known here
    result = Described([_gradient()])
    assert embedded_metadata(job, result, EMBED) is None
    (encoded,) = encode_result(job, result, EMBED)
    decoded = _decode(encoded)
    assert PROMPT.encode() not in encoded.data
    assert b"blurry" not in encoded.data
    assert not getattr(decoded, "text", {})
    assert _exif_metadata(decoded) is None
    # The same bytes as with metadata turned off: nothing of the job is in them.
    assert encoded == encode_result(job, result, OutputConfig())[0]


def test_an_unencrypted_job_gets_the_metadata_only_when_configured(make_job: MakeJob) -> None:
    job = make_job(("negative_prompt", "blurry"), output="image/webp")
    described, plain = Described([_gradient()]), Generated([_gradient()])
    assert embedded_metadata(job, described, OutputConfig()) is None
    assert embedded_metadata(job, described, EMBED) == described.metadata()
    # A result that does not describe itself: what the job and the result say.
    assert embedded_metadata(job, plain, EMBED) == {
        "prompt": PROMPT,
        "negative_prompt": "blurry",
        "seed": "42",
        "model": "tiny",
    }
    (encoded,) = encode_result(job, described, EMBED)
    assert _exif_metadata(_decode(encoded)) == described.metadata()


def test_encode_result_follows_the_output_config(make_job: MakeJob) -> None:
    images = Generated([_gradient(), _gradient(32, 48)])
    untagged, tagged = make_job(), make_job(output="image/png")
    assert [e.mime for e in encode_result(untagged, images)] == ["image/png", "image/png"]
    jpeg = OutputConfig(default_format="jpeg", quality=20)
    low = encode_result(untagged, images, jpeg)
    assert [(e.mime, e.width, e.height) for e in low] == [
        ("image/jpeg", 48, 32),
        ("image/jpeg", 32, 48),
    ]
    assert low[0] == encode_image(_gradient(), "image/jpeg", quality=20)
    high = encode_result(untagged, images, jpeg.model_copy(update={"quality": 95}))
    assert len(high[0].data) > len(low[0].data)
    # The request's own type wins over the default.
    assert encode_result(tagged, images, jpeg)[0].mime == "image/png"


def test_encode_result_refusals(make_job: MakeJob) -> None:
    with pytest.raises(JobRejected, match="image/gif") as caught:
        encode_result(make_job(output="image/gif"), Generated([_gradient()]))
    assert caught.value.tag == ("output", "image/gif")
    with pytest.raises(EngineError, match="no image"):
        encode_result(make_job(), Generated([]))
