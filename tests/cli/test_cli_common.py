"""What the subcommands share: keys from --nsec or the environment, reading a request
event, the engine part of a configuration file, and the exit codes they lead to."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from _cli_support import DVM_TOML, ENGINE_TOML, write_config

from nostr_imagegen.cli import main
from nostr_imagegen.cli.common import NSEC_ENV, keys_from, read_event
from nostr_imagegen.errors import ConfigError, EventError
from nostr_imagegen.nostr.event import MAX_EVENT_JSON_BYTES, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.config import load_engine_part


def test_keys_from_prefers_the_option_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given, from_env = Keys.generate(), Keys.generate()
    monkeypatch.setenv(NSEC_ENV, from_env.nsec())
    chosen = keys_from(given.nsec())
    assert chosen is not None
    assert chosen.public_key == given.public_key
    chosen = keys_from(None)
    assert chosen is not None
    assert chosen.public_key == from_env.public_key
    monkeypatch.setenv("OTHER_NSEC", given.secret_hex())
    chosen = keys_from(None, env="OTHER_NSEC")
    assert chosen is not None
    assert chosen.public_key == given.public_key


@pytest.mark.parametrize("value", [None, "", "  \n"])
def test_keys_from_a_missing_or_blank_variable_is_none(
    value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(NSEC_ENV, raising=False)
    else:
        monkeypatch.setenv(NSEC_ENV, value)
    assert keys_from(None) is None


@pytest.mark.parametrize(
    "secret",
    ["nsec1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqbad", "ab" * 31 + "zz"],
)
def test_keys_from_refuses_a_bad_key_without_quoting_it(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUSTOMER_NSEC", secret)
    with pytest.raises(ConfigError) as caught:
        keys_from(None, env="CUSTOMER_NSEC", role="customer")
    message = str(caught.value)
    assert message == "the customer key (--nsec or CUSTOMER_NSEC) is not an nsec or 64 hex"
    assert secret[5:15] not in message


def test_read_event_reads_a_file_or_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    event = sign_event(UnsignedEvent(kind=1, content="hi", created_at=1700000000), Keys.generate())
    path = tmp_path / "event.json"
    path.write_text(event.to_json(), encoding="utf-8")
    assert read_event(str(path)).id == event.id
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(event.to_json().encode())))
    assert read_event("-").id == event.id


def test_read_event_refuses_what_is_too_large_or_missing(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (MAX_EVENT_JSON_BYTES + 1))
    with pytest.raises(EventError, match="larger than"):
        read_event(str(path))
    with pytest.raises(FileNotFoundError):
        read_event(str(tmp_path / "missing.json"))


def test_engine_part_of_an_engine_file_and_of_a_dvm_file(tmp_path: Path) -> None:
    engine, dvm = tmp_path / "engine.toml", tmp_path / "dvm.toml"
    write_config(engine, ENGINE_TOML)
    write_config(dvm, DVM_TOML)
    from_engine, from_dvm = load_engine_part(engine), load_engine_part(dvm)
    assert type(from_engine) is type(from_dvm)
    assert from_engine == from_dvm
    assert from_dvm.models["tiny"].source == str(tmp_path / "tiny")


def test_engine_part_names_the_mistake_in_the_file_it_was_meant_as(tmp_path: Path) -> None:
    engine, dvm = tmp_path / "engine.toml", tmp_path / "dvm.toml"
    write_config(engine, ENGINE_TOML + "\n[modles.x]\nsource = 'y'\n")
    write_config(dvm, DVM_TOML.replace("[service]", "[service]\nqueue = 3"))
    with pytest.raises(ConfigError, match=r"modles: unknown key") as caught:
        load_engine_part(engine)
    assert "service" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"service\.queue: unknown key"):
        load_engine_part(dvm)


def test_engine_part_refuses_a_secret_key_in_a_dvm_file(tmp_path: Path) -> None:
    keys = Keys.generate()
    dvm = tmp_path / "dvm.toml"
    write_config(dvm, DVM_TOML + f'\n[identity]\nsecret_key = "{keys.nsec()}"\n')
    with pytest.raises(ConfigError, match="never write the secret key") as caught:
        load_engine_part(dvm)
    assert keys.nsec() not in str(caught.value)


def test_run_reports_a_bad_configuration_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NSEC_ENV, Keys.generate().nsec())
    dvm = tmp_path / "dvm.toml"
    write_config(dvm, DVM_TOML.replace("[service]", "[service]\nqueue = 3"))
    code = main(["run", "--config", str(dvm), "--out", str(tmp_path / "out"), "-"])
    assert code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("nostr-imagegen run: ")
    assert "service.queue: unknown key" in captured.err


def test_run_reports_a_missing_model_folder_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The configuration names a local folder that is not there: refused before any job."""
    monkeypatch.setenv(NSEC_ENV, Keys.generate().nsec())
    engine = tmp_path / "engine.toml"
    engine.write_text(ENGINE_TOML)  # no ./tiny beside it
    code = main(["run", "--config", str(engine), "--out", str(tmp_path / "out"), "-"])
    assert code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"models.tiny.source: local path {tmp_path / 'tiny'} does not exist" in captured.err
