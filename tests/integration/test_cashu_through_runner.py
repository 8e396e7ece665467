"""Cashu payments end to end: a priced JobRunner on a real relay whose ``cashu=`` is the real
``CashuRedeemer`` against a real nutshell mint (FakeWallet, 127.0.0.1, from .venv-cashu; the
fixtures of test_cashu.py, skipped when .venv-cashu is missing). The customer's request carries
``["cashu", TOKEN]``; what is checked is what the customer sees and whether the engine ran.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dvm_harness import (  # noqa: F401 - fixtures
    Customer,
    Dvm,
    GatedEngine,
    query_relay,
    tiny_engine_fixture,
    tiny_model_folder_fixture,
)
from test_cashu import CASHU_PYTHON, mint_tokens, mint_url  # noqa: F401 - fixtures

from nostr_imagegen.imagejob.results import JobStatus
from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.client import build_request
from nostr_imagegen.service.ledger import JobState
from nostr_imagegen.service.payment.cashu import CashuRedeemer
from nostr_imagegen.service.payment.flow import PaymentSettings

pytestmark = pytest.mark.integration

SMALL = (("size", "64x64"),)
PRICE = 21_000  # 21 sat


def paying_request(keys: Keys, prompt: str, token: str) -> Event:
    """A job request carrying ``["cashu", token]``."""
    plain = build_request(keys, prompt=prompt, params=SMALL)
    template = UnsignedEvent(
        kind=plain.kind, tags=(*plain.tags, ("cashu", token)), content=plain.content
    )
    return sign_event(template, keys)


async def test_cashu_token_pays_once_and_spent_or_short_tokens_get_an_error(
    relay_url: str,
    tmp_path: Path,
    tiny_engine: Any,
    mint_url: str,  # noqa: F811 - fixture
    mint_tokens: Callable[..., list[str]],  # noqa: F811 - fixture
) -> None:
    # Worth exactly the price: nutshell's default swap fee (100 ppk) comes off what the
    # operator keeps, which the operator bears (docs/payments.md), not the customer.
    token, short = mint_tokens(21, 8)
    engine = GatedEngine(tiny_engine)
    engine.gate.set()
    redeemer = CashuRedeemer([mint_url], wallet_dir=tmp_path / "operator", python=CASHU_PYTHON)
    async with (
        Dvm(
            [relay_url], tmp_path / "dvm", engine, pricing=lambda job: PRICE, cashu=redeemer,
            payment_settings=PaymentSettings(timeout_s=5),
        ) as dvm,
        Customer([relay_url]) as customer,
    ):  # fmt: skip
        assert dvm.ledger is not None
        paid = paying_request(customer.keys, "paid in ecash", token)
        outcome = await customer.submit(paid, timeout_s=90)
        assert outcome.result is not None, outcome.error
        statuses = [parsed.status for _, parsed in outcome.feedback]
        assert JobStatus.PAYMENT_REQUIRED not in statuses  # redeemed, never asked
        assert JobStatus.PROCESSING in statuses
        assert JobStatus.ERROR not in statuses
        assert engine.calls == [paid.id]
        record = dvm.ledger.payment(paid.id)
        assert record is not None
        assert record.paid
        assert record.method == "cashu"
        assert record.proof is not None
        assert record.proof.startswith("cashu:")

        again = paying_request(customer.keys, "the same token again", token)
        spent = await customer.submit(again, timeout_s=60)
        assert spent.result is None
        assert spent.error is not None
        assert "already spent" in spent.error
        assert JobStatus.PAYMENT_REQUIRED not in [p.status for _, p in spent.feedback]
        assert dvm.state(again.id) is JobState.FAILED

        cheap = paying_request(customer.keys, "too little ecash", short)
        refused = await customer.submit(cheap, timeout_s=60)
        assert refused.result is None
        assert refused.error is not None
        assert "21 sat" in refused.error  # the price, named
        assert dvm.state(cheap.id) is JobState.FAILED

        # Without a token, a DVM that takes only Cashu has nothing to ask the customer to
        # pay: an `error` naming the price and the way to pay, never `payment-required`.
        unpaid = build_request(customer.keys, prompt="no token at all", params=SMALL)
        told = await customer.submit(unpaid, timeout_s=60)
        assert told.result is None
        assert told.error is not None
        assert str(PRICE) in told.error
        assert "cashu" in told.error
        assert JobStatus.PAYMENT_REQUIRED not in [p.status for _, p in told.feedback]
        assert dvm.state(unpaid.id) is JobState.FAILED
        assert engine.calls == [paid.id]  # the engine never ran for the refused three
    results = await query_relay(
        relay_url, {"kinds": [6100], "#e": [paid.id, again.id, cheap.id, unpaid.id]}
    )
    assert [event.id for event in results] == [outcome.result.id]


async def test_config_with_cashu_mints_builds_a_runner_that_redeems(
    relay_url: str,
    tmp_path: Path,
    tiny_engine: Any,
    tiny_model_folder: Path,
    mint_url: str,  # noqa: F811 - fixture
    mint_tokens: Callable[..., list[str]],  # noqa: F811 - fixture
) -> None:
    """``[pricing]`` + ``[payment.cashu]`` with ``python = ".venv-cashu/bin/python"`` (relative
    to the config's folder, as an operator writes it), through ``payment_pieces``."""
    from nostr_imagegen.service.config import load_service_config
    from nostr_imagegen.service.ledger import Ledger
    from nostr_imagegen.service.payment.setup import payment_pieces

    (tmp_path / ".venv-cashu").symlink_to(CASHU_PYTHON.parents[1], target_is_directory=True)
    config_path = tmp_path / "dvm.toml"
    config_path.write_text(
        f"""
device = "cpu"

[models.tiny]
source = "{tiny_model_folder}"
family = "sd15"
native_size = 64
steps = 2

[service]
relays = ["{relay_url}"]

[[storage]]
type = "local"
folder = "images"
listen = "127.0.0.1:0"

[pricing]
job_msats = {PRICE}

[payment]
timeout_s = 5

[payment.cashu]
mints = ["{mint_url}"]
wallet_dir = "operator-wallet"
python = ".venv-cashu/bin/python"
"""
    )
    config = load_service_config(config_path)
    (token,) = mint_tokens(32)
    # payment_pieces reads the ledger only for zap receipts (none configured here).
    with Ledger(tmp_path / "pieces.sqlite3") as pieces_ledger:
        async with payment_pieces(
            config,
            pool=None,  # type: ignore[arg-type]  # only an invoice backend would use it
            ledger=pieces_ledger,
            plan=tiny_engine.plan,
        ) as kwargs:
            assert sorted(kwargs) == ["cashu", "payment_settings", "pricing"]
            async with (
                Dvm([relay_url], tmp_path / "dvm", tiny_engine, **kwargs),
                Customer([relay_url]) as customer,
            ):
                paid = paying_request(customer.keys, "paid per the config", token)
                outcome = await customer.submit(paid, timeout_s=90)
    assert outcome.result is not None, outcome.error
    assert JobStatus.PAYMENT_REQUIRED not in [p.status for _, p in outcome.feedback]
    assert (tmp_path / "operator-wallet").is_dir()  # the config's wallet_dir, beside it
