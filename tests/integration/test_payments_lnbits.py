"""Priced jobs paid through a real LNbits (FakeWallet) on 127.0.0.1, on real relays.

The DVM invoices from one LNbits wallet with its invoice key; the customer pays from a
second wallet of the same instance (FakeWallet settles only its own invoices) with its
admin key. What is checked is what the customer and the ledger see.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from dvm_harness import (  # noqa: F401 - fixtures
    Customer,
    Dvm,
    query_relay,
    tiny_engine_fixture,
    tiny_model_folder_fixture,
)
from lnbits_harness import LnbitsServer, lnbits_fixture  # noqa: F401 - fixture

from nostr_imagegen.imagejob.results import JobStatus
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.client import build_request
from nostr_imagegen.service.ledger import JobState
from nostr_imagegen.service.payment.backend import decode_invoice
from nostr_imagegen.service.payment.flow import PaymentSettings
from nostr_imagegen.service.payment.lnbits import LnbitsBackend, LnbitsPayer

pytestmark = pytest.mark.integration

SMALL = (("size", "64x64"),)
PRICE_MSATS = 21_000


def _incoming(server: LnbitsServer, wallet: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in server.payments(wallet["inkey"]) if p["amount"] > 0]


async def test_priced_job_is_invoiced_paid_from_another_wallet_and_delivered(
    relay_url: str, tmp_path: Path, tiny_engine: Any, lnbits: LnbitsServer
) -> None:
    operator = lnbits.wallet("dvm")
    wallet = lnbits.wallet("customer", fund_msats=100_000)
    backend = LnbitsBackend(lnbits.url, operator["inkey"], poll_interval_s=0.5)
    payer = LnbitsPayer(lnbits.url, wallet["adminkey"])
    try:
        async with (
            Dvm(
                [relay_url], tmp_path, tiny_engine,
                pricing=lambda job: PRICE_MSATS, invoices=backend,
                payment_settings=PaymentSettings(timeout_s=60),
            ) as dvm,
            Customer([relay_url]) as customer,
        ):  # fmt: skip
            request = build_request(customer.keys, prompt="paid for", params=SMALL)
            outcome = await customer.submit(request, timeout_s=90, payer=payer, max_msats=30_000)
            assert outcome.result is not None, outcome.error
            statuses = [parsed.status for _, parsed in outcome.feedback]
            asked = [p for _, p in outcome.feedback if p.status is JobStatus.PAYMENT_REQUIRED]
            assert len(asked) == 1
            assert asked[0].amount_msats == PRICE_MSATS
            assert asked[0].bolt11 is not None
            # `processing` comes after the payment, before the result.
            paid_at = statuses.index(JobStatus.PAYMENT_REQUIRED)
            assert JobStatus.PROCESSING in statuses[paid_at + 1 :]
            assert dvm.ledger is not None
            record = dvm.ledger.payment(request.id)
            assert record is not None
            assert record.paid
            assert record.method == "invoice"
            assert record.bolt11 == asked[0].bolt11
        incoming = _incoming(lnbits, operator)
        assert [p["payment_hash"] for p in incoming] == [decode_invoice(record.bolt11).payment_hash]
        assert incoming[0]["status"] == "success"
        assert incoming[0]["amount"] == PRICE_MSATS
    finally:
        await backend.aclose()
        await payer.aclose()


async def test_unpaid_job_ends_in_error_after_the_timeout(
    relay_url: str, tmp_path: Path, tiny_engine: Any, lnbits: LnbitsServer
) -> None:
    operator = lnbits.wallet("dvm-unpaid")
    backend = LnbitsBackend(lnbits.url, operator["inkey"], poll_interval_s=0.3)
    try:
        async with (
            Dvm(
                [relay_url], tmp_path, tiny_engine,
                pricing=lambda job: PRICE_MSATS, invoices=backend,
                payment_settings=PaymentSettings(timeout_s=2.0),
            ) as dvm,
            Customer([relay_url]) as customer,
        ):  # fmt: skip
            request = build_request(customer.keys, prompt="never paid", params=SMALL)
            outcome = await customer.submit(request, timeout_s=30)
            assert outcome.result is None
            assert outcome.error is not None
            assert "expired unpaid" in outcome.error
            assert next(p.status for _, p in outcome.feedback) is JobStatus.PAYMENT_REQUIRED
            assert dvm.state(request.id) is JobState.FAILED
    finally:
        await backend.aclose()


async def test_bid_below_the_price_gets_an_error_naming_the_price(
    relay_url: str, tmp_path: Path, tiny_engine: Any, lnbits: LnbitsServer
) -> None:
    operator = lnbits.wallet("dvm-bid")
    backend = LnbitsBackend(lnbits.url, operator["inkey"])
    try:
        async with (
            Dvm(
                [relay_url], tmp_path, tiny_engine,
                pricing=lambda job: PRICE_MSATS, invoices=backend,
            ),
            Customer([relay_url]) as customer,
        ):  # fmt: skip
            request = build_request(customer.keys, prompt="cheap", params=SMALL, bid_msats=1000)
            outcome = await customer.submit(request, timeout_s=30)
            assert outcome.error is not None
            assert str(PRICE_MSATS) in outcome.error
        assert _incoming(lnbits, operator) == []
        assert lnbits.payments(operator["inkey"]) == []
    finally:
        await backend.aclose()


async def test_customer_budget_refuses_an_invoice_above_max_msats(
    relay_url: str, tmp_path: Path, tiny_engine: Any, lnbits: LnbitsServer
) -> None:
    operator = lnbits.wallet("dvm-budget")
    wallet = lnbits.wallet("customer-budget", fund_msats=100_000)
    backend = LnbitsBackend(lnbits.url, operator["inkey"])
    payer = LnbitsPayer(lnbits.url, wallet["adminkey"])
    try:
        async with (
            Dvm(
                [relay_url], tmp_path, tiny_engine,
                pricing=lambda job: PRICE_MSATS, invoices=backend,
            ),
            Customer([relay_url]) as customer,
        ):  # fmt: skip
            request = build_request(customer.keys, prompt="too dear", params=SMALL)
            outcome = await customer.submit(request, timeout_s=30, payer=payer, max_msats=20_000)
            assert outcome.result is None
            assert outcome.error is not None
            assert "more than the 20000 allowed" in outcome.error
        # Nothing left the customer's wallet (its only payment is the funding).
        assert [p for p in lnbits.payments(wallet["inkey"]) if p["amount"] < 0] == []
    finally:
        await backend.aclose()
        await payer.aclose()


# -- `nostr-imagegen serve`, killed with SIGKILL while a paid job waits ----------------------


def _priced_config(tmp_path: Path, relay_url: str, model: Path, lnbits_url: str) -> Path:
    config = tmp_path / "dvm.toml"
    config.write_text(
        f"""
device = "cpu"

[models.tiny]
source = "{model}"
family = "sd15"
native_size = 64
steps = 2

[service]
relays = ["{relay_url}"]
ledger = "ledger.sqlite3"
progress_interval_s = 0.2
shutdown_timeout_s = 5
allow_private_relays = true

[identity]
secret_key_file = "dvm.key"

[[storage]]
type = "local"
folder = "images"
listen = "127.0.0.1:0"

[announce]
enabled = false

[pricing]
job_msats = {PRICE_MSATS}

[payment]
backend = "lnbits"
timeout_s = 120

[payment.lnbits]
url = "{lnbits_url}"
invoice_key_file = "lnbits.key"
poll_interval_s = 0.5
"""
    )
    return config


def _payments_rows(path: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT request_id, bolt11, paid_at FROM payments").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def _job_state(path: Path, request_id: str) -> str | None:
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT state FROM jobs WHERE request_id = ?", (request_id,)).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()
    return None if row is None else str(row[0])


async def _start_serve(config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "NOSTR_IMAGEGEN_NSEC": "", "LNBITS_INVOICE_KEY": ""}
    with log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nostr_imagegen.cli", "serve", "--config", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr, env=env,
        )  # fmt: skip


def _serve_setup(
    tmp_path: Path, relay_url: str, model: Path, lnbits: LnbitsServer
) -> tuple[Keys, Path, dict[str, Any]]:
    dvm_keys = Keys.generate()
    (tmp_path / "dvm.key").write_text(dvm_keys.nsec() + "\n")
    os.chmod(tmp_path / "dvm.key", 0o600)
    operator = lnbits.wallet("dvm-serve")
    (tmp_path / "lnbits.key").write_text(operator["inkey"] + "\n")
    os.chmod(tmp_path / "lnbits.key", 0o600)
    return dvm_keys, _priced_config(tmp_path, relay_url, model, lnbits.url), operator


async def test_serve_killed_after_payment_delivers_once_and_never_invoices_again(
    relay_url: str, tmp_path: Path, tiny_model_folder: Path, lnbits: LnbitsServer
) -> None:
    dvm_keys, config, operator = _serve_setup(tmp_path, relay_url, tiny_model_folder, lnbits)
    ledger = tmp_path / "ledger.sqlite3"
    wallet = lnbits.wallet("customer-serve", fund_msats=100_000)
    payer = LnbitsPayer(lnbits.url, wallet["adminkey"])
    log = tmp_path / "serve.log"
    invoices: list[str] = []

    async def pay_later(bolt11: str, max_msats: int | None) -> None:
        invoices.append(bolt11)  # paid below, while the DVM is down

    try:
        async with Customer([relay_url]) as customer:
            request = build_request(
                customer.keys, prompt="paid across a crash", params=SMALL,
                provider=dvm_keys.public_key,
            )  # fmt: skip
            first = await _start_serve(config, log)
            try:
                waiting = asyncio.create_task(
                    customer.submit(
                        request, provider=dvm_keys.public_key, timeout_s=180, payer=pay_later
                    )
                )
                async with asyncio.timeout(120):
                    while not invoices:
                        assert first.returncode is None, log.read_text()
                        await asyncio.sleep(0.05)
                first.send_signal(signal.SIGKILL)
                await first.wait()
            finally:
                if first.returncode is None:
                    first.kill()
                    await first.wait()
            assert _job_state(ledger, request.id) == "payment-required"
            await payer(invoices[0], 30_000)  # the customer pays while the DVM is dead

            second = await _start_serve(config, log)
            try:
                outcome = await waiting
                assert outcome.result is not None, outcome.error + log.read_text()[-3000:]
                async with asyncio.timeout(30):
                    while _job_state(ledger, request.id) != "published":
                        await asyncio.sleep(0.05)
            finally:
                second.send_signal(signal.SIGTERM)
                await asyncio.wait_for(second.wait(), 60)
            assert second.returncode == 0, log.read_text()
        stored = await query_relay(relay_url, {"kinds": [6100], "#e": [request.id]})
        assert [event.id for event in stored] == [outcome.result.id]
        # One invoice ever: one ledger row, one invoice on the operator's wallet, paid once.
        rows = _payments_rows(ledger)
        assert len(rows) == 1
        assert rows[0][1] == invoices[0]
        assert rows[0][2] is not None
        assert len(lnbits.payments(operator["inkey"])) == 1
        asked = {p.bolt11 for _, p in outcome.feedback if p.status is JobStatus.PAYMENT_REQUIRED}
        assert asked == {invoices[0]}
        assert operator["inkey"] not in log.read_text()  # the key never reaches a log
    finally:
        await payer.aclose()


async def test_submit_pay_lnbits_completes_a_priced_job_against_serve(
    relay_url: str, tmp_path: Path, tiny_model_folder: Path, lnbits: LnbitsServer
) -> None:
    dvm_keys, config, operator = _serve_setup(tmp_path, relay_url, tiny_model_folder, lnbits)
    wallet = lnbits.wallet("customer-cli", fund_msats=100_000)
    log = tmp_path / "serve.log"
    serve = await _start_serve(config, log)
    try:
        env = {**os.environ, "LNBITS_ADMIN_KEY": wallet["adminkey"]}
        submit = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nostr_imagegen.cli", "submit", "--relay", relay_url,
            "--prompt", "paid from the command line", "--param", "size", "64x64",
            "--provider", dvm_keys.npub, "--pay-lnbits", lnbits.url, "--max-msats", "25000",
            "--timeout", "150",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(submit.communicate(), 180)
    finally:
        serve.send_signal(signal.SIGTERM)
        await asyncio.wait_for(serve.wait(), 60)
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert submit.returncode == 0, err.decode() + log.read_text()[-3000:]
    assert lines[-1]["type"] == "result"
    assert lines[-1]["urls"]
    assert any(line.get("status") == "payment-required" for line in lines)
    assert "paid" in err.decode()
    assert wallet["adminkey"] not in err.decode() + out.decode()
    incoming = [p for p in lnbits.payments(operator["inkey"]) if p["status"] == "success"]
    assert len(incoming) == 1
    assert incoming[0]["amount"] == PRICE_MSATS
