"""CashuRedeemer against a real Cashu mint: PyPI ``cashu`` (nutshell) with its FakeWallet
Lightning backend, started on 127.0.0.1 on a free port from .venv-cashu (``.ci/setup``), its
data in a temporary folder, ended by its pid. Tokens are minted there by the cashu wallet
(``cashu_mint_tokens.py``); the redeemer swaps them into the operator's wallet (NUT-03)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from nostr_imagegen.errors import PaymentError, PaymentRefused
from nostr_imagegen.service.localrelay import free_port
from nostr_imagegen.service.payment.cashu import CashuRedeemer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CASHU_PYTHON = ROOT / ".venv-cashu" / "bin" / "python"
MINT_TOKENS = Path(__file__).with_name("cashu_mint_tokens.py")


@pytest.fixture
def mint_url(tmp_path: Path) -> Iterator[str]:
    """A nutshell mint with FakeWallet on 127.0.0.1, ended by its pid after the test."""
    if not CASHU_PYTHON.exists():
        pytest.skip(".venv-cashu (the cashu package) is not set up: run .ci/setup")
    port = free_port()
    home = tmp_path / "mint"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),  # nutshell writes under ~/.cashu otherwise
        "CASHU_DIR": str(home / "cashu"),
        "MINT_BACKEND_BOLT11_SAT": "FakeWallet",
        "MINT_PRIVATE_KEY": os.urandom(16).hex(),
        "MINT_LISTEN_HOST": "127.0.0.1",
        "MINT_LISTEN_PORT": str(port),
        "MINT_DATABASE": str(home / "db"),
        "FAKEWALLET_DELAY_INCOMING_PAYMENT": "0",
        "FAKEWALLET_DELAY_OUTGOING_PAYMENT": "0",
        "MINT_RATE_LIMIT": "FALSE",
        "DEBUG": "FALSE",
    }
    log = (tmp_path / "mint.log").open("wb")
    child = subprocess.Popen(
        [str(CASHU_PYTHON.with_name("mint"))],  # nutshell's own entry point
        cwd=home,  # nutshell reads a .env in its working folder
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v1/keysets", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if child.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail("the cashu mint did not start:\n" + (tmp_path / "mint.log").read_text())
            time.sleep(0.2)
        yield url
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGTERM)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        log.close()


@pytest.fixture
def mint_tokens(mint_url: str, tmp_path: Path) -> Callable[..., list[str]]:
    def make(*amounts: int) -> list[str]:
        done = subprocess.run(
            [
                str(CASHU_PYTHON),
                str(MINT_TOKENS),
                mint_url,
                str(tmp_path / "customer"),
                *map(str, amounts),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.split()

    return make


@pytest.fixture
def redeemer(mint_url: str, tmp_path: Path) -> CashuRedeemer:
    return CashuRedeemer([mint_url], wallet_dir=tmp_path / "operator", python=CASHU_PYTHON)


async def test_good_token_redeemed_once_then_refused(
    redeemer: CashuRedeemer, mint_tokens: Callable[..., list[str]], mint_url: str, tmp_path: Path
) -> None:
    (token,) = mint_tokens(64)
    assert token.startswith("cashuB")
    redemption = await redeemer.redeem(token, price_msats=21_000)
    assert redemption.mint == mint_url
    # nutshell's default swap fee (input_fee_ppk) comes off what the operator keeps.
    assert 0 < redemption.amount_msats <= 64_000
    assert len(redemption.token_hash) == 64
    assert (tmp_path / "operator").stat().st_mode & 0o077 == 0
    with pytest.raises(PaymentRefused, match="already spent"):
        await redeemer.redeem(token, price_msats=21_000)


async def test_short_and_foreign_tokens_refused(
    redeemer: CashuRedeemer, mint_tokens: Callable[..., list[str]], mint_url: str, tmp_path: Path
) -> None:
    short, foreign = mint_tokens(8, 64)
    with pytest.raises(PaymentRefused, match="worth 8 sat; the job costs 21 sat"):
        await redeemer.redeem(short, price_msats=20_001)
    elsewhere = CashuRedeemer(
        ["http://127.0.0.1:9"], wallet_dir=tmp_path / "other", python=CASHU_PYTHON
    )
    with pytest.raises(PaymentRefused, match="not one this service accepts"):
        await elsewhere.redeem(foreign, price_msats=1_000)
    # Refused tokens are not spent: the right redeemer still takes them.
    assert (await redeemer.redeem(foreign, price_msats=21_000)).mint == mint_url


@pytest.mark.parametrize(
    ("token", "match"),
    [
        ("cashuBnotbase64!!", "malformed"),
        ("cashuAeyJ0b2tlbiI6W119", "malformed|no proofs"),
        ("lnbc1xyz0000", "malformed"),
        ("cashuB" + "A" * (70 * 1024), "longer than"),
    ],
)
async def test_malformed_tokens_refused(redeemer: CashuRedeemer, token: str, match: str) -> None:
    with pytest.raises(PaymentRefused, match=match):
        await redeemer.redeem(token, price_msats=1_000)


async def test_unreachable_mint_is_an_error_not_a_refusal(
    mint_tokens: Callable[..., list[str]], mint_url: str, tmp_path: Path
) -> None:
    (token,) = mint_tokens(16)
    down = CashuRedeemer([mint_url], wallet_dir=tmp_path / "op", python=sys.executable)
    # Our own venv has no cashu package: the bridge fails, reported as PaymentError.
    with pytest.raises(PaymentError) as caught:
        await down.redeem(token, price_msats=1_000)
    assert not isinstance(caught.value, PaymentRefused)
