"""The priced-job flow through NWC (NIP-47): the DVM's ``NwcBackend`` talks to a wallet
service (tests/integration/nwc_wallet.py) over a real relay; that service settles through a
real LNbits (FakeWallet), and the customer pays from a second LNbits wallet."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from dvm_harness import (  # noqa: F401 - fixtures
    Customer,
    Dvm,
    tiny_engine_fixture,
    tiny_model_folder_fixture,
)
from lnbits_harness import LnbitsServer, lnbits_fixture  # noqa: F401 - fixture
from nwc_wallet import WalletService

from nostr_imagegen.imagejob.results import JobStatus
from nostr_imagegen.nostr.encryption import EncryptionScheme
from nostr_imagegen.service.client import build_request
from nostr_imagegen.service.payment.flow import PaymentSettings
from nostr_imagegen.service.payment.lnbits import LnbitsBackend, LnbitsPayer
from nostr_imagegen.service.payment.nwc import NwcBackend, NwcPayer

pytestmark = pytest.mark.integration

PRICE_MSATS = 21_000


@pytest.mark.parametrize("nip44", [True, False], ids=["nip44", "nip04-wallet"])
async def test_priced_job_paid_through_an_nwc_wallet(
    relay_url: str, tmp_path: Path, tiny_engine: Any, lnbits: LnbitsServer, nip44: bool
) -> None:
    operator = lnbits.wallet(f"dvm-nwc-{nip44}")
    wallet = lnbits.wallet(f"customer-nwc-{nip44}", fund_msats=100_000)
    payer = LnbitsPayer(lnbits.url, wallet["adminkey"])
    async with WalletService(relay_url, lnbits.url, operator["inkey"], nip44=nip44) as service:
        backend = NwcBackend.from_uri(service.uri, poll_interval_s=30.0)
        assert service.client.secret_hex() not in repr(backend)
        try:
            async with (
                Dvm(
                    [relay_url], tmp_path, tiny_engine,
                    pricing=lambda job: PRICE_MSATS, invoices=backend,
                    payment_settings=PaymentSettings(timeout_s=60),
                ) as dvm,
                Customer([relay_url]) as customer,
            ):  # fmt: skip
                request = build_request(
                    customer.keys, prompt="paid over nwc", params=(("size", "64x64"),)
                )
                outcome = await customer.submit(
                    request, timeout_s=90, payer=payer, max_msats=30_000
                )
                assert outcome.result is not None, outcome.error
                asked = [p for _, p in outcome.feedback if p.status is JobStatus.PAYMENT_REQUIRED]
                assert len(asked) == 1
                assert asked[0].amount_msats == PRICE_MSATS
                assert dvm.ledger is not None
                record = dvm.ledger.payment(request.id)
                assert record is not None
                assert record.paid
        finally:
            await backend.aclose()
    methods = [r["method"] for r in service.requests]
    assert methods[0] == "make_invoice"
    assert methods.count("make_invoice") == 1
    assert "lookup_invoice" in methods  # settlement is confirmed by asking, not by the hint
    expected = EncryptionScheme.NIP44 if nip44 else EncryptionScheme.NIP04
    assert set(service.schemes) == {expected}
    incoming = [p for p in lnbits.payments(operator["inkey"]) if p["status"] == "success"]
    assert len(incoming) == 1


async def test_customer_pays_through_nwc_and_the_budget_holds(
    relay_url: str, tmp_path: Path, tiny_engine: Any, lnbits: LnbitsServer
) -> None:
    operator = lnbits.wallet("dvm-nwc-payer")
    customer_wallet = lnbits.wallet("customer-nwc-payer", fund_msats=100_000)
    backend = LnbitsBackend(lnbits.url, operator["inkey"])
    async with WalletService(
        relay_url, lnbits.url, customer_wallet["inkey"], adminkey=customer_wallet["adminkey"]
    ) as service:
        payer = NwcPayer(service.uri)
        try:
            async with (
                Dvm(
                    [relay_url], tmp_path, tiny_engine,
                    pricing=lambda job: PRICE_MSATS, invoices=backend,
                ),
                Customer([relay_url]) as customer,
            ):  # fmt: skip
                dear = build_request(customer.keys, prompt="too dear", params=(("size", "64x64"),))
                refused = await customer.submit(dear, timeout_s=30, payer=payer, max_msats=1000)
                assert refused.error is not None
                assert "more than the 1000 allowed" in refused.error
                request = build_request(
                    customer.keys, prompt="nwc payer", params=(("size", "64x64"),)
                )
                outcome = await customer.submit(
                    request, timeout_s=90, payer=payer, max_msats=30_000
                )
                assert outcome.result is not None, outcome.error
        finally:
            await payer.aclose()
            await backend.aclose()
    assert [r["method"] for r in service.requests] == ["pay_invoice"]
    incoming = [p for p in lnbits.payments(operator["inkey"]) if p["status"] == "success"]
    assert len(incoming) == 1


async def test_submit_pay_nwc_pays_and_gets_the_result(
    relay_url: str, tmp_path: Path, tiny_engine: Any, lnbits: LnbitsServer
) -> None:
    operator = lnbits.wallet("dvm-nwc-cli")
    customer_wallet = lnbits.wallet("customer-nwc-cli", fund_msats=100_000)
    backend = LnbitsBackend(lnbits.url, operator["inkey"])
    async with WalletService(
        relay_url, lnbits.url, customer_wallet["inkey"], adminkey=customer_wallet["adminkey"]
    ) as service:
        try:
            async with Dvm(
                [relay_url],
                tmp_path,
                tiny_engine,
                pricing=lambda job: PRICE_MSATS,
                invoices=backend,
            ) as dvm:
                env = {**os.environ, "NOSTR_IMAGEGEN_NWC_URI": service.uri}
                submit = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "nostr_imagegen.cli", "submit", "--relay", relay_url,
                    "--prompt", "paid over nwc from the command line", "--param", "size", "64x64",
                    "--provider", dvm.keys.npub, "--pay-nwc", "--max-msats", "25000",
                    "--timeout", "90",
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
                )  # fmt: skip
                out, err = await asyncio.wait_for(submit.communicate(), 120)
        finally:
            await backend.aclose()
    assert submit.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert lines[-1]["type"] == "result"
    assert "paid the invoice over NWC" in err.decode()
    assert service.client.secret_hex() not in err.decode() + out.decode()
    assert [r["method"] for r in service.requests] == ["pay_invoice"]
