"""``nostr-imagegen run`` end to end on requests built and signed by another Nostr
implementation (rust-nostr's Python bindings, nostr-sdk); its answers verified by nostr-sdk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from _engine_support import TinyModels
from PIL import Image

from nostr_imagegen.cli import main
from nostr_imagegen.imagejob.dimensions import ModelFamily
from nostr_imagegen.imagejob.results import parse_feedback, parse_result
from nostr_imagegen.nostr.event import parse_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.testing import write_tiny_config

pytestmark = pytest.mark.engine

nostr_sdk = pytest.importorskip("nostr_sdk", reason="nostr-sdk (the dev extra) is not installed")

PROVIDER = Keys.generate()


def sdk_request(tmp_path: Path, tags: list[list[str]]) -> tuple[Path, Any]:
    """A kind 5100 request built and signed by nostr-sdk, written to a file."""
    customer = nostr_sdk.Keys.generate()
    event = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(5100), "")
        .tags([nostr_sdk.Tag.parse(tag) for tag in tags])
        .finalize(customer)
    )
    path = tmp_path / "request.json"
    path.write_text(event.as_json(), encoding="utf-8")
    return path, event


@pytest.fixture
def config_file(tiny_models: TinyModels, tmp_path: Path) -> Path:
    return write_tiny_config(
        tmp_path / "engine.toml",
        {"tiny": tiny_models.sd15, "tiny-xl": tiny_models.sdxl},
        families={"tiny-xl": ModelFamily.SDXL},
        loras={"noise-a": tiny_models.lora_a},
        device="cpu",
        extra="[output]\nembed_metadata = true\n[limits]\nmax_pixels = 16384\n",
    )


def run_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setenv("NOSTR_IMAGEGEN_NSEC", PROVIDER.nsec())
    code = main(["run", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_serves_a_request_signed_by_nostr_sdk(
    tmp_path: Path,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request_file, request = sdk_request(
        tmp_path,
        [
            ["i", "a purple ostrich watching the sunset", "text"],
            ["param", "size", "128x64"],
            ["param", "lora", "noise-a", "0.5"],
            ["param", "seed", "42"],
            ["output", "image/webp"],
            ["p", PROVIDER.public_key],
        ],
    )
    out = tmp_path / "images"
    code, stdout, stderr = run_cli(
        capsys,
        monkeypatch,
        "--config",
        str(config_file),
        "--out",
        str(out),
        "--base-url",
        "https://img.example/dvm/",
        str(request_file),
    )
    assert code == 0, stderr
    assert "seed 42" in stderr
    # The result verifies under both implementations.
    answer = nostr_sdk.Event.from_json(stdout.strip())
    answer.verify()
    event = parse_event(stdout)
    assert event.kind == 6100
    assert event.pubkey == PROVIDER.public_key
    assert ("e", request.id().to_hex()) in event.tags
    assert ("p", request.author().to_hex()) in event.tags
    assert json.loads(event.tag_value("request") or "") == json.loads(request.as_json())
    (link,) = parse_result(event).images
    (written,) = out.iterdir()
    data = written.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert written.name == f"{digest}.webp"
    assert link.url == f"https://img.example/dvm/{digest}.webp"
    assert (link.sha256, link.mime, link.width, link.height) == (digest, "image/webp", 128, 64)
    with Image.open(written) as image:
        assert image.size == (128, 64)
        assert image.format == "WEBP"


def test_without_base_url_links_are_file_urls(
    tmp_path: Path,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request_file, _ = sdk_request(tmp_path, [["i", "ostrich", "text"], ["param", "upscale", "2"]])
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        capsys, monkeypatch, "--config", str(config_file), "--out", str(out), str(request_file)
    )
    assert code == 0, stderr
    nostr_sdk.Event.from_json(stdout.strip()).verify()
    (written,) = out.iterdir()
    assert stdout.count(written.resolve().as_uri()) >= 1
    with Image.open(written) as image:
        assert image.size == (128, 128)  # the native 64 pixels, upscaled twice
        assert "prompt" in image.info  # metadata embedded, as configured


SECRET_PROMPT = "a secret purple ostrich watching the sunset"
SECRET_NEGATIVE = "no lighthouse anywhere"
TEXT_CHUNKS = {b"tEXt", b"iTXt", b"zTXt", b"eXIf"}


def png_chunk_types(data: bytes) -> set[bytes]:
    """Every chunk type in a PNG file, read from the bytes (no decoder in between)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    types, offset = set(), 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        types.add(data[offset + 4 : offset + 8])
        offset += 12 + length
    return types


def private_tags(seed: str) -> list[list[str]]:
    return [
        ["i", SECRET_PROMPT, "text"],
        ["param", "negative_prompt", SECRET_NEGATIVE],
        ["param", "seed", seed],
        ["param", "lora", "noise-a", "0.5"],
    ]


def sdk_encrypted_request(tmp_path: Path, seed: str, scheme: str) -> Path:
    """A kind 5100 request whose inputs and params nostr-sdk encrypted to the provider."""
    customer = nostr_sdk.Keys.generate()
    provider = nostr_sdk.PublicKey.parse(PROVIDER.public_key)
    payload = json.dumps(private_tags(seed))
    if scheme == "nip44":
        content = nostr_sdk.nip44_encrypt(
            customer.secret_key(), provider, payload, nostr_sdk.Nip44Version.V2
        )
    else:
        content = nostr_sdk.nip04_encrypt(customer.secret_key(), provider, payload)
    tags = [["p", PROVIDER.public_key], ["encrypted"], ["output", "image/png"]]
    event = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(5100), content)
        .tags([nostr_sdk.Tag.parse(tag) for tag in tags])
        .finalize(customer)
    )
    path = tmp_path / "request.json"
    path.write_text(event.as_json(), encoding="utf-8")
    return path


@pytest.mark.parametrize("scheme", ["nip44", "nip04"])
def test_an_encrypted_request_leaves_no_job_detail_in_the_file(
    tmp_path: Path,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    """embed_metadata = true, yet the file of an encrypted job carries none of it."""
    request_file = sdk_encrypted_request(tmp_path, "4242", scheme)
    out = tmp_path / "images"
    code, stdout, stderr = run_cli(
        capsys, monkeypatch, "--config", str(config_file), "--out", str(out), str(request_file)
    )
    assert code == 0, stderr
    assert "seed 4242" in stderr  # the params were decrypted and used
    (written,) = out.iterdir()
    data = written.read_bytes()
    assert not png_chunk_types(data) & TEXT_CHUNKS
    with Image.open(written) as image:
        assert image.info == {}
        assert not image.getexif()
    for secret in (SECRET_PROMPT, SECRET_NEGATIVE, "noise-a"):
        assert secret.encode() not in data
        assert secret not in stdout  # nor in the published result, encrypted too


def test_an_unencrypted_request_gets_the_configured_metadata(
    tmp_path: Path,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same request in the clear: prompt, negative prompt and params in the file."""
    tags = [*private_tags("4242"), ["output", "image/webp"], ["p", PROVIDER.public_key]]
    request_file, _ = sdk_request(tmp_path, tags)
    out = tmp_path / "images"
    code, _, stderr = run_cli(
        capsys, monkeypatch, "--config", str(config_file), "--out", str(out), str(request_file)
    )
    assert code == 0, stderr
    (written,) = out.iterdir()
    with Image.open(written) as image:
        comment = image.getexif().get_ifd(0x8769)[0x9286]
    metadata = json.loads(comment[8:])
    assert metadata["prompt"] == SECRET_PROMPT
    assert metadata["negative_prompt"] == SECRET_NEGATIVE
    assert metadata["loras"] == "noise-a:0.5"
    assert (metadata["seed"], metadata["model"]) == ("4242", "tiny")


def test_rejected_request_prints_error_feedback(
    tmp_path: Path,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request_file, request = sdk_request(
        tmp_path, [["i", "ostrich", "text"], ["param", "model", "dall-e"]]
    )
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        capsys, monkeypatch, "--config", str(config_file), "--out", str(out), str(request_file)
    )
    assert code == 2
    assert "dall-e" in stderr
    nostr_sdk.Event.from_json(stdout.strip()).verify()
    feedback = parse_feedback(parse_event(stdout))
    assert feedback.status == "error"
    assert "choose one of tiny, tiny-xl" in (feedback.message or "")
    assert feedback.request_id == request.id().to_hex()
    assert not out.exists()


def test_request_for_another_provider_and_bad_input(
    tmp_path: Path,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = Keys.generate().public_key
    request_file, _ = sdk_request(tmp_path, [["i", "ostrich", "text"], ["p", other]])
    code, stdout, _ = run_cli(
        capsys, monkeypatch, "--config", str(config_file), "--out", str(tmp_path), str(request_file)
    )
    assert (code, stdout) == (3, "")
    broken = tmp_path / "broken.json"
    broken.write_text(request_file.read_text().replace('"kind":5100', '"kind":5101'))
    code, stdout, stderr = run_cli(
        capsys, monkeypatch, "--config", str(config_file), "--out", str(tmp_path), str(broken)
    )
    assert (code, stdout) == (2, "")
    assert "invalid event" in stderr
