"""``nostr-imagegen parse``: the job as JSON (exit 0), or why not (exit 2, or 3 for another
provider), never printing the provider's secret."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nostr_imagegen.cli import main
from nostr_imagegen.cli.common import NSEC_ENV
from nostr_imagegen.nostr.encryption import EncryptionScheme, encrypt
from nostr_imagegen.nostr.event import MAX_EVENT_JSON_BYTES, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys

CUSTOMER = Keys.generate()
PROVIDER = Keys.generate()
PROMPT = "A purple ostrich watching the sunset"


def event_file(tmp_path: Path, *tags: tuple[str, ...], kind: int = 5100, content: str = "") -> Path:
    event = sign_event(UnsignedEvent(kind=kind, tags=tags, content=content), CUSTOMER)
    return write(tmp_path, event.to_json())


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "request.json"
    path.write_text(text, encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["parse", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NSEC_ENV, raising=False)


def test_prints_the_job_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = event_file(tmp_path, ("i", PROMPT, "text"), ("param", "ratio", "4:3"), ("bid", "1000"))
    code, out, err = run(capsys, str(path))
    assert (code, err) == (0, "")
    job: dict[str, Any] = json.loads(out)
    assert job["id"] == json.loads(path.read_text())["id"]
    assert job["customer"] == CUSTOMER.public_key
    assert job["prompt"] == PROMPT
    assert job["ratio"] == "4:3"
    assert job["bid"] == {"min_msats": 1000, "max_msats": 1000}
    assert "request" not in job


def test_reads_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = event_file(tmp_path, ("i", PROMPT, "text")).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, _ = run(capsys, "-")
    assert code == 0
    assert json.loads(out)["prompt"] == PROMPT


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"kind": 5100}', ""],
)
def test_invalid_event_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    code, out, err = run(capsys, str(write(tmp_path, text)))
    assert (code, out) == (2, "")
    assert "invalid event" in err


def test_tampered_event_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = event_file(tmp_path, ("i", PROMPT, "text"))
    document = json.loads(path.read_text())
    document["tags"][0][1] = "something else"
    code, _, err = run(capsys, str(write(tmp_path, json.dumps(document))))
    assert code == 2
    assert "invalid event" in err


def test_oversized_input_is_not_read_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, " " * (MAX_EVENT_JSON_BYTES + 1))
    code, _, err = run(capsys, str(path))
    assert code == 2
    assert str(MAX_EVENT_JSON_BYTES) in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(tmp_path / "absent.json"))
    assert code == 2
    assert "cannot read" in err


def test_rejected_job_exits_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = event_file(tmp_path, ("i", PROMPT, "text"), ("param", "ratio", "5:4"))
    code, out, err = run(capsys, str(path))
    assert (code, out) == (2, "")
    assert "job rejected: ratio '5:4' is not one of 1:1, 4:3" in err
    assert "['param', 'ratio', '5:4']" in err


def test_kind_5050_needs_the_kind_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = event_file(tmp_path, ("i", PROMPT, "text"), kind=5050)
    code, _, err = run(capsys, str(path))
    assert code == 2
    assert "kind 5050" in err
    code, out, _ = run(capsys, "--kind", "5050", str(path))
    assert code == 0
    assert json.loads(out)["kind"] == 5050


@pytest.mark.parametrize("kind", ["4999", "6000", "abc"])
def test_kind_option_takes_request_kinds_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = event_file(tmp_path, ("i", PROMPT, "text"))
    with pytest.raises(SystemExit) as info:
        main(["parse", "--kind", kind, str(path)])
    assert info.value.code == 2
    assert "--kind" in capsys.readouterr().err


def test_job_for_another_provider_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Keys.generate()
    path = event_file(tmp_path, ("i", PROMPT, "text"), ("p", other.public_key))
    # Without a provider key there is nobody to compare with.
    assert run(capsys, str(path))[0] == 0
    code, out, err = run(capsys, "--nsec", PROVIDER.nsec(), str(path))
    assert (code, out) == (3, "")
    assert other.public_key in err
    monkeypatch.setenv(NSEC_ENV, PROVIDER.secret_hex())
    assert run(capsys, str(path))[0] == 3


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_encrypted_request_is_decrypted_with_the_key_from_the_environment(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    scheme: EncryptionScheme,
) -> None:
    secret = json.dumps([["i", PROMPT, "text"], ["param", "size", "512x512"]])
    content = encrypt(secret, CUSTOMER, PROVIDER.public_key, scheme)
    path = event_file(tmp_path, ("p", PROVIDER.public_key), ("encrypted",), content=content)
    code, _, err = run(capsys, str(path))
    assert code == 2
    assert "encrypted" in err
    monkeypatch.setenv(NSEC_ENV, PROVIDER.nsec())
    code, out, err = run(capsys, str(path))
    assert code == 0
    job = json.loads(out)
    assert (job["prompt"], job["size"], job["encryption"]) == (PROMPT, [512, 512], scheme.value)
    for secret_form in (PROVIDER.nsec(), PROVIDER.secret_hex()):
        assert secret_form not in out + err


def test_bad_key_is_refused_without_echoing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = event_file(tmp_path, ("i", PROMPT, "text"))
    almost = PROVIDER.nsec()[:-1] + ("q" if PROVIDER.nsec()[-1] != "q" else "p")
    code, out, err = run(capsys, "--nsec", almost, str(path))
    assert (code, out) == (2, "")
    assert "nsec" in err
    assert almost not in err
    assert almost[5:20] not in err


def test_runs_as_a_module(tmp_path: Path) -> None:
    path = event_file(tmp_path, ("i", PROMPT, "text"), ("param", "size", "1024x768"))
    done = subprocess.run(
        [sys.executable, "-m", "nostr_imagegen.cli", "parse", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["size"] == [1024, 768]
