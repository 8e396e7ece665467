"""The payment pieces one by one: ledger payment rows, prices, bolt11 checks, config rules
and secrets that never show."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nostr_imagegen.errors import ConfigError, PaymentError
from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.config import ServiceConfig
from nostr_imagegen.service.ledger import Ledger
from nostr_imagegen.service.payment.backend import checked_invoice, decode_invoice, whole_sats
from nostr_imagegen.service.payment.lnbits import LnbitsBackend, LnbitsPayer
from nostr_imagegen.service.payment.pricing import price_plan, price_tags
from nostr_imagegen.service.payment.settings import PricingConfig, read_secret

# Issued by LNbits 1.6 (FakeWallet) for 21 sats, expiry 600 s.
BOLT11 = (
    "lnbc210n1p4sagd4dq9dfhkyxqzjcsp5gahvk6uv9un7g593w7tzdsapp93x3lhejqkc9wyah49zwrqa4nzspp"
    "58hs9vm62h4j9pj5hyxg0qr46tqfkpcjhswrmzpc2n4jsapn47vcs0pqf8e4h0az43dhd48jchrzxj8snt87yz"
    "uhdqqzyn8waw5za7qkz9l2kpta56rmd0zpska5zuz564s26xterjyt5cwfpg7gq2pv3k4qquejc44"
)
HASH = "3de0566f4abd6450ca972190f00eba581360e2578387b1070a9d650e8675f331"


def _request(keys: Keys) -> Any:
    return sign_event(UnsignedEvent(kind=5100, tags=(("i", "x", "text"),), content=""), keys)


def test_invoice_is_recorded_once_and_a_proof_pays_one_job_only(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        keys = Keys.generate()
        first, second = (
            _request(keys),
            sign_event(UnsignedEvent(kind=5100, tags=(("i", "y", "text"),), content=""), keys),
        )
        ledger.claim(first)
        ledger.claim(second)
        stored = ledger.record_invoice(first.id, kind="invoice", amount_msats=21000, bolt11="a")
        again = ledger.record_invoice(first.id, kind="invoice", amount_msats=99000, bolt11="b")
        assert again.bolt11 == stored.bolt11 == "a"
        assert again.amount_msats == 21000
        assert ledger.record_paid(first.id, proof="zap:r1", kind="zap")
        assert ledger.record_paid(first.id, proof="zap:r1", kind="zap")  # idempotent
        assert not ledger.record_paid(second.id, proof="zap:r1", kind="zap")  # replay
        assert ledger.proof_used("zap:r1")
        assert not ledger.proof_used("zap:r2")
        record = ledger.payment(first.id)
        assert record is not None
        assert record.paid
        assert record.method == "zap"
        assert ledger.payment(second.id) is None


def test_version_1_ledger_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with Ledger(path):
        pass
    db = sqlite3.connect(path)
    db.execute("DROP TABLE payments")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    db.commit()
    db.close()
    with Ledger(path) as ledger:
        request = _request(Keys.generate())
        ledger.claim(request)
        ledger.record_invoice(request.id, kind="invoice", amount_msats=1000, bolt11="x")
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("2",)
    db.close()


@dataclass
class _Dims:
    width: int
    height: int


@dataclass
class _Plan:
    model: str
    dimensions: _Dims
    steps: int
    loras: tuple[tuple[str, float], ...] = ()


def test_price_adds_every_part() -> None:
    pricing = PricingConfig(
        job_msats=1000, models={"big": 5000}, per_megapixel_msats=1000, per_step_msats=10,
        per_lora_msats=7,
    )  # fmt: skip
    plan = _Plan("small", _Dims(1000, 1000), steps=30, loras=(("a", 1.0), ("b", 0.5)))
    assert price_plan(pricing, plan, default_steps=20) == 1000 + 1000 + 100 + 14
    assert price_plan(pricing, _Plan("big", _Dims(500, 500), 10), default_steps=20) == 5250
    assert PricingConfig().free
    assert not pricing.free
    assert price_tags(pricing)["models"] == {"big": 5000}


def test_bolt11_is_decoded_and_checked_against_what_was_asked() -> None:
    invoice = decode_invoice(BOLT11)
    assert (invoice.amount_msats, invoice.payment_hash) == (21000, HASH)
    assert checked_invoice(BOLT11, payment_hash=HASH, amount_msats=21000).bolt11 == BOLT11
    with pytest.raises(PaymentError, match="not the 5000"):
        checked_invoice(BOLT11, payment_hash=HASH, amount_msats=5000)
    with pytest.raises(PaymentError, match="payment hash"):
        checked_invoice(BOLT11, payment_hash="00" * 32, amount_msats=21000)
    assert whole_sats(21001) == 22


@pytest.mark.parametrize(
    "hostile", ["", "lnbc1", "x" * 5000, BOLT11[:-1] + "q", "lnbc999999999999999999p1qqqq", "\x00"]
)
def test_hostile_bolt11_is_a_clear_error(hostile: str) -> None:
    with pytest.raises(PaymentError):
        decode_invoice(hostile)


@pytest.mark.parametrize("amount", [0, -1, 10**30, True])
def test_absurd_amounts_are_refused(amount: Any) -> None:
    with pytest.raises(PaymentError):
        whole_sats(amount)


async def test_payer_refuses_an_invoice_above_the_budget() -> None:
    payer = LnbitsPayer("http://127.0.0.1:9", "adminsecret")
    try:
        with pytest.raises(PaymentError, match="more than the 20000 allowed"):
            await payer(BOLT11, 20000)
    finally:
        await payer.aclose()


def test_keys_never_show_in_reprs() -> None:
    backend = LnbitsBackend("http://127.0.0.1:9", "invoicesecret123")
    payer = LnbitsPayer("http://127.0.0.1:9", "adminsecret456")
    assert "invoicesecret123" not in repr(backend) + str(vars(backend))
    assert "adminsecret456" not in repr(payer)


def _config(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "models": {"m": {"source": "org/model", "family": "sd15"}},
        "service": {"relays": ["ws://127.0.0.1:1"]},
        "storage": [{"type": "local", "folder": "img", "base_url": "https://img.example"}],
    }
    data.update(sections)
    return data


def test_config_names_and_rules() -> None:
    config = ServiceConfig.from_mapping(
        _config(
            pricing={"job_msats": 21000},
            payment={
                "backend": "lnbits", "mode": "after", "timeout_s": 60,
                "lnbits": {"url": "https://lnbits.example", "invoice_key_file": "k"},
                "zaps": {"lud16": "dvm@example.org"},
                "cashu": {"mints": ["https://mint.example"]},
            },
        )
    )  # fmt: skip
    assert config.pricing.job_msats == 21000
    assert config.payment.mode == "after"
    with pytest.raises(ConfigError, match=r"no \[payment\]"):
        ServiceConfig.from_mapping(_config(pricing={"job_msats": 1}))
    with pytest.raises(ConfigError, match=r"needs a \[payment\.lnbits\]"):
        ServiceConfig.from_mapping(_config(pricing={"job_msats": 1}, payment={"backend": "lnbits"}))
    with pytest.raises(ConfigError) as refused:
        ServiceConfig.from_mapping(
            _config(
                payment={
                    "backend": "nwc",
                    "nwc": {"uri_file": "nostr+walletconnect://abc?secret=s3cr3t"},
                }
            )
        )
    assert "s3cr3t" not in str(refused.value)
    with pytest.raises(ConfigError):  # a key in the TOML: no such setting
        ServiceConfig.from_mapping(
            _config(
                payment={
                    "backend": "lnbits",
                    "lnbits": {"url": "https://l.example", "invoice_key": "abc"},
                }
            )
        )


def test_secrets_come_from_env_first_then_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "key"
    key.write_text("fromfile\n")
    monkeypatch.delenv("TEST_PAY_KEY", raising=False)
    assert read_secret(file=key, env="TEST_PAY_KEY", what="key") == "fromfile"
    monkeypatch.setenv("TEST_PAY_KEY", "fromenv")
    assert read_secret(file=key, env="TEST_PAY_KEY", what="key") == "fromenv"
    monkeypatch.delenv("TEST_PAY_KEY")
    with pytest.raises(ConfigError, match="no key"):
        read_secret(file=None, env="TEST_PAY_KEY", what="key")


def test_the_priced_example_config_is_valid() -> None:
    import tomllib

    path = Path(__file__).resolve().parents[2] / "examples" / "priced_dvm.toml"
    config = ServiceConfig.from_mapping(tomllib.loads(path.read_text()), source=path)
    assert config.pricing.job_msats == 21000
    assert config.payment.backend == "lnbits"
    assert config.payment.lnbits is not None
    assert config.payment.lnbits.invoice_key_file == path.parent / "lnbits-invoice.key"
