"""serve / submit / demo: the failures a user meets before any network is touched."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from _cli_support import DVM_TOML, write_config

from nostr_imagegen.cli import main
from nostr_imagegen.nostr.keys import Keys


def test_serve_refuses_a_secret_key_in_the_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOSTR_IMAGEGEN_NSEC", raising=False)
    keys = Keys.generate()
    config = tmp_path / "dvm.toml"
    write_config(config, DVM_TOML + f'\n[identity]\nsecret_key = "{keys.nsec()}"\n')
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "never write the secret key" in err
    assert keys.nsec() not in err


def test_serve_without_a_key_says_where_to_put_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOSTR_IMAGEGEN_NSEC", raising=False)
    config = tmp_path / "dvm.toml"
    write_config(config, DVM_TOML)
    assert main(["serve", "--config", str(config)]) == 2
    assert "no secret key" in capsys.readouterr().err


def test_serve_with_an_invalid_configuration_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "dvm.toml"
    write_config(config, DVM_TOML.replace("[service]", "[service]\nqueue = 3"))
    assert main(["serve", "--config", str(config)]) == 2
    assert "service.queue: unknown key" in capsys.readouterr().err
    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) == 2


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--encrypt"], "--encrypt needs --provider"),
        (["--param", "ratio"], "--param needs a key and a value"),
        (["--provider", "npub1notakey"], "npub"),
        (["--timeout", "0"], "--timeout must be positive"),
        (["--nsec", "nsec1bad"], "customer key (--nsec or NOSTR_IMAGEGEN_CUSTOMER_NSEC) is not"),
    ],
)
def test_submit_checks_its_arguments_before_connecting(
    arguments: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["submit", "--relay", "ws://127.0.0.1:9", "--prompt", "x", *arguments])
    assert code == 2
    err = capsys.readouterr().err
    assert complaint in err
    assert "nsec1bad" not in err


def test_submit_reports_a_relay_that_takes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 (discard) on 127.0.0.1: nothing listens, the request is accepted by no relay.
    code = main(["submit", "--relay", "ws://127.0.0.1:9", "--prompt", "x", "--timeout", "2"])
    assert code == 1
    assert "no relay accepted" in capsys.readouterr().err


def test_demo_without_nostr_relay_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("nostr_imagegen.service.localrelay.find_nostr_relay", lambda: None)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["demo"]) == 2
    assert "pip install nostr-relay" in capsys.readouterr().err
    assert list(tmp_path.glob("nostr-imagegen-demo-*")) == []


@pytest.mark.parametrize("keep", [False, True])
def test_demo_removes_its_working_folder_unless_kept(
    keep: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The folder logic alone (the full demo runs in tests/integration/test_demo_command.py)."""
    seen: list[Path] = []

    async def fake_demo(args: object, workdir: Path, out: object) -> int:
        (workdir / "images").mkdir()
        (workdir / "images" / "x.png").write_bytes(b"png")
        seen.append(workdir)
        return 0

    monkeypatch.setattr("nostr_imagegen.cli.demo._demo", fake_demo)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["demo", *(["--keep"] if keep else [])]) == 0
    [workdir] = seen
    assert workdir.parent == tmp_path
    assert (workdir / "images" / "x.png").exists() is keep
    assert (f"kept: {workdir}" in capsys.readouterr().out) is keep
