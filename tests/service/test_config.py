"""The DVM configuration: engine + service sections, relative paths, and no secrets in TOML."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from nostr_imagegen.errors import ConfigError
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.config import (
    BlossomStorage,
    IdentityConfig,
    LocalStorage,
    Nip96Storage,
    ServiceConfig,
    load_keys,
    load_service_config,
)

BASE = """
[models.tiny]
source = "./models/tiny"
family = "sd15"

[service]
relays = ["wss://relay.example.com", "ws://127.0.0.1:7000"]
ledger = "state/ledger.sqlite3"

[identity]
secret_key_file = "dvm.key"

[[storage]]
type = "blossom"
servers = ["https://blossom.example.com"]

[[storage]]
type = "nip96"
url = "https://nostr.build"

[[storage]]
type = "local"
folder = "images"
base_url = "https://images.example.org"
listen = "127.0.0.1:8090"

[announce]
name = "Ostrich"
about = "tiny pictures"
refresh_hours = 6

[queue]
size = 3

[fetch]
max_bytes = 1048576
allow_private_addresses = true
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "models" / "tiny").mkdir(parents=True, exist_ok=True)  # BASE's local model
    path = tmp_path / "dvm.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_full_configuration_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    config = load_service_config(_write(tmp_path, BASE))
    assert isinstance(config, ServiceConfig)
    assert config.service.relays == ("wss://relay.example.com", "ws://127.0.0.1:7000")
    assert config.service.ledger == tmp_path / "state" / "ledger.sqlite3"
    assert config.identity.secret_key_file == tmp_path / "dvm.key"
    blossom, nip96, local = config.storage
    assert isinstance(blossom, BlossomStorage)
    assert isinstance(nip96, Nip96Storage)
    assert isinstance(local, LocalStorage)
    assert local.folder == tmp_path / "images"
    assert local.listen_address() == ("127.0.0.1", 8090)
    assert config.queue.size == 3
    assert config.announce.refresh_hours == 6
    assert config.models["tiny"].source == str(tmp_path / "models" / "tiny")
    policy = config.fetch.policy()
    assert policy.max_bytes == 1048576
    assert policy.allow_private_addresses is True
    engine = config.engine_config()
    assert type(engine).__name__ == "EngineConfig"
    assert engine.models == config.models


@pytest.mark.parametrize(
    ("snippet", "where"),
    [
        ('[identity]\nsecret_key = "{nsec}"\n', "identity.secret_key"),
        ('[identity]\nnsec = "{nsec}"\n', "identity.nsec"),
        ('[identity]\nkey = "{hex}"\n', "identity.key"),
        ('[identity]\nsecret_key_file = "{nsec}"\n', "identity.secret_key_file"),
        ('[identity]\nsecret_key_env = "{hex}"\n', "identity.secret_key_env"),
        ('[announce]\nabout = "{nsec}"\n', "announce.about"),
    ],
)
def test_a_secret_key_in_the_toml_is_refused_without_quoting_it(
    tmp_path: Path, snippet: str, where: str
) -> None:
    keys = Keys.generate()
    body = BASE.replace('[identity]\nsecret_key_file = "dvm.key"\n', "")
    if snippet.startswith("[announce]"):
        body = body.replace('[announce]\nname = "Ostrich"\nabout = "tiny pictures"\n', "")
        snippet = snippet.rstrip("\n") + '\nname = "x"\n'
    text = body + snippet.format(nsec=keys.nsec(), hex=keys.secret_hex())
    with pytest.raises(ConfigError) as caught:
        load_service_config(_write(tmp_path, text))
    message = str(caught.value)
    assert where in message
    assert "never write the secret key" in message
    assert keys.nsec() not in message
    assert keys.secret_hex() not in message


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("[queue]\nsize = 3", "[queue]\nsize = 0"), "queue.size"),
        (
            (
                'relays = ["wss://relay.example.com", "ws://127.0.0.1:7000"]',
                'relays = ["https://x"]',
            ),
            "service.relays",
        ),
        (
            ('relays = ["wss://relay.example.com", "ws://127.0.0.1:7000"]', "relays = []"),
            "service.relays",
        ),
        (("[queue]\nsize = 3", "[queue]\nsize = 3\ncolour = 1"), "queue.colour: unknown key"),
        (('type = "nip96"', 'type = "ftp"'), "storage.1"),
        (('listen = "127.0.0.1:8090"', 'listen = "everywhere"'), "listen"),
        # Trailing newlines passed ^...$ patterns with re.match once.
        (('listen = "127.0.0.1:8090"', 'listen = "127.0.0.1:8090\\n"'), "listen"),
        (('secret_key_file = "dvm.key"', 'secret_key_env = "DVM_KEY\\n"'), "secret_key_env"),
        (("[service]", "[service]\naccepted_kinds = [6100]"), "accepted_kinds"),
    ],
)
def test_invalid_values_are_config_errors_naming_the_field(
    tmp_path: Path, change: tuple[str, str], complaint: str
) -> None:
    old, new = change
    assert old in BASE
    with pytest.raises(ConfigError, match=complaint.replace(".", r"\.")):
        load_service_config(_write(tmp_path, BASE.replace(old, new)))


def test_fetch_allow_hosts_become_the_policys_canonical_origins(tmp_path: Path) -> None:
    text = BASE.replace(
        "allow_private_addresses = true",
        'allow_hosts = ["Images.Internal:8080", "images.internal.:8080", "[FD00::0005]:443"]',
    )
    config = load_service_config(_write(tmp_path, text))
    assert config.fetch.allow_hosts == ("images.internal:8080", "[fd00::5]:443")
    policy = config.fetch.policy()
    assert policy.allow_hosts == frozenset({"images.internal:8080", "[fd00::5]:443"})
    assert policy.allow_private_addresses is False
    assert load_service_config(_write(tmp_path, BASE)).fetch.policy().allow_hosts == frozenset()


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("https://images.internal:8080", "without a scheme"),
        ("images.internal:8080/images", "without a path"),
        ("images.internal", "port is required"),
        ("images.internal:0", "port from 1 to 65535"),
        ("images.internal:65536", "port from 1 to 65535"),
        ("fd00::5:443", "IPv6 address in brackets"),
    ],
)
def test_bad_fetch_allow_hosts_entries_are_config_errors_naming_them(
    tmp_path: Path, entry: str, complaint: str
) -> None:
    text = BASE.replace(
        "allow_private_addresses = true", f'allow_hosts = ["ok.internal:1", "{entry}"]'
    )
    with pytest.raises(ConfigError) as caught:
        load_service_config(_write(tmp_path, text))
    message = str(caught.value)
    assert "fetch.allow_hosts" in message
    assert repr(entry) in message
    assert complaint in message


def test_missing_sections_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="service: required key is missing"):
        load_service_config(_write(tmp_path, '[models.tiny]\nsource = "x"\nfamily = "sd15"\n'))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_service_config(_write(tmp_path, "[service\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_service_config(tmp_path / "absent.toml")


def test_keys_come_from_the_environment_first_then_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from_env, from_file = Keys.generate(), Keys.generate()
    key_file = tmp_path / "dvm.key"
    key_file.write_text(from_file.nsec() + "\n")
    os.chmod(key_file, 0o600)
    identity = IdentityConfig(secret_key_file=key_file, secret_key_env="DVM_KEY")
    assert load_keys(identity, environ={"DVM_KEY": from_env.secret_hex()}) == from_env
    with caplog.at_level(logging.WARNING):
        assert load_keys(identity, environ={}) == from_file
    assert caplog.records == []
    os.chmod(key_file, 0o644)
    with caplog.at_level(logging.WARNING):
        assert load_keys(identity, environ={}) == from_file
    assert "chmod 600" in caplog.text
    assert from_file.nsec() not in caplog.text


def test_key_errors_never_quote_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no secret key"):
        load_keys(IdentityConfig(), environ={})
    bad = "nsec1" + "q" * 58
    with pytest.raises(ConfigError, match="NOSTR_IMAGEGEN_NSEC is not a valid key") as caught:
        load_keys(IdentityConfig(), environ={"NOSTR_IMAGEGEN_NSEC": bad})
    assert bad not in str(caught.value)
    key_file = tmp_path / "broken.key"
    key_file.write_text("not a key at all\n")
    with pytest.raises(ConfigError, match="does not hold a valid key") as caught:
        load_keys(IdentityConfig(secret_key_file=key_file), environ={})
    assert "not a key at all" not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read the secret key file"):
        load_keys(IdentityConfig(secret_key_file=tmp_path / "absent.key"), environ={})


async def test_storage_sections_become_hosts_in_fallback_order(tmp_path: Path) -> None:
    import hashlib

    import httpx

    from nostr_imagegen.service.app import build_hosts
    from nostr_imagegen.service.upload import BlossomHost, LocalFolderHost, Nip96Host

    text = BASE.replace('base_url = "https://images.example.org"\n', "").replace(
        '"127.0.0.1:8090"', '"127.0.0.1:0"'
    )
    config = load_service_config(_write(tmp_path, text))
    with build_hosts(config.storage, Keys.generate()) as hosts:
        assert [type(host) for host in hosts] == [BlossomHost, Nip96Host, LocalFolderHost]
        local = hosts[2]
        data = b"\x89PNG not really"
        digest = hashlib.sha256(data).hexdigest()
        uploaded = await local.upload(data, mime="image/png", sha256=digest)
        assert uploaded.url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient() as client:
            response = await client.get(uploaded.url)
        assert response.content == data  # served by the built-in server while the context lasts
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(uploaded.url)


def test_local_storage_needs_base_url_or_listen(tmp_path: Path) -> None:
    from nostr_imagegen.service.app import build_hosts

    text = BASE.replace('base_url = "https://images.example.org"\n', "").replace(
        'listen = "127.0.0.1:8090"\n', ""
    )
    config = load_service_config(_write(tmp_path, text))
    with (
        pytest.raises(ConfigError, match="needs base_url or listen"),
        build_hosts(config.storage, Keys.generate()),
    ):
        pass


@pytest.mark.parametrize(
    ("section", "fields"),
    [
        ("BlossomStorage", {"type": "blossom", "servers": ("ftp://blossom.example",)}),
        ("Nip96Storage", {"type": "nip96", "url": "file:///etc/passwd"}),
        ("LocalStorage", {"type": "local", "folder": "/srv/images", "base_url": "javascript:x"}),
    ],
)
def test_image_host_urls_must_be_http(section: str, fields: dict[str, Any]) -> None:
    from pydantic import ValidationError

    from nostr_imagegen.service import config as service_config

    with pytest.raises(ValidationError, match=r"must start with https:// or http://"):
        getattr(service_config, section)(**fields)


def test_cashu_python_is_made_absolute_without_following_the_venv_link(tmp_path: Path) -> None:
    # A virtual environment's bin/python links to the base interpreter, which has none of the
    # environment's packages: the configured path must be kept, not resolved.
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    text = BASE + (
        '\n[pricing]\njob_msats = 1000\n\n[payment.cashu]\nmints = ["https://mint.example"]\n'
        'python = "venv/bin/python"\nwallet_dir = "wallet"\n'
    )
    cashu = load_service_config(_write(tmp_path, text)).payment.cashu
    assert cashu is not None
    assert cashu.python == tmp_path / "venv" / "bin" / "python"
    assert cashu.wallet_dir == tmp_path / "wallet"
