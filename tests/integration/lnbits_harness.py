"""A real LNbits (PyPI ``lnbits``, funding source FakeWallet) on 127.0.0.1 for the payment
tests, from ``.venv-lnbits`` (made by ``.ci/setup``). Started once per session on a free
port with its data folder in a temporary directory, nothing phoning home (price feeds and
extension manifests off), the rate limit raised, and ended by its pid.

``lnbits.wallet(name, fund_msats=...)`` creates a wallet (funded by the super user) and
returns its ``id``, ``inkey`` and ``adminkey``. FakeWallet settles only invoices of the same
instance, so the DVM's and the customer's wallets live side by side here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from nostr_imagegen.service.localrelay import free_port

_ROOT = Path(__file__).resolve().parents[2]
_VENV = _ROOT / ".venv-lnbits"
_STARTUP_S = 90.0
_PASSWORD = "test-password-1"


@dataclass
class LnbitsServer:
    url: str
    token: str

    def wallet(self, name: str, *, fund_msats: int = 0) -> dict[str, Any]:
        """A new wallet (its own LNbits account), optionally funded."""
        response = httpx.post(
            f"{self.url}/api/v1/account",
            json={"name": name},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        wallet: dict[str, Any] = response.json()
        if fund_msats:
            funded = httpx.put(
                f"{self.url}/users/api/v1/balance",
                json={"id": wallet["id"], "amount": fund_msats // 1000},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=10,
            )
            funded.raise_for_status()
        return wallet

    def payments(self, key: str) -> list[dict[str, Any]]:
        """The wallet's payments (incoming and outgoing), newest first."""
        response = httpx.get(f"{self.url}/api/v1/payments", headers={"X-Api-Key": key}, timeout=10)
        response.raise_for_status()
        return list(response.json())


def _site_packages() -> Path | None:
    found = sorted(_VENV.glob("lib/python3*/site-packages"))
    return found[0] if found and (found[0] / "lnbits" / "static").is_dir() else None


@pytest.fixture(scope="session", name="lnbits")
def lnbits_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LnbitsServer]:
    executable = _VENV / "bin" / "lnbits"
    site = _site_packages()
    if not executable.exists() or site is None:
        pytest.skip("LNbits is not installed in .venv-lnbits (run .ci/setup)")
    folder = tmp_path_factory.mktemp("lnbits")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "LNBITS_DATA_FOLDER": str(folder / "data"),
        "LNBITS_BACKEND_WALLET_CLASS": "FakeWallet",
        "LNBITS_ADMIN_UI": "true",
        "LNBITS_RATE_LIMIT_NO": "1000000",
        # Nothing phones home: no price feed, no extension manifests.
        "LNBITS_PRICE_AGGREGATOR_ENABLED": "false",
        "LNBITS_EXCHANGE_RATE_PROVIDERS": "[]",
        "LNBITS_EXTENSIONS_MANIFESTS": "[]",
        "LNBITS_EXTENSIONS_DEFAULT_INSTALL": "[]",
    }
    log = (folder / "lnbits.log").open("wb")
    # LNbits serves its static folder relative to the working directory.
    process = subprocess.Popen(
        [str(executable), "--host", "127.0.0.1", "--port", str(port)],
        cwd=site, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + _STARTUP_S
        while True:
            if process.poll() is not None:
                raise RuntimeError((folder / "lnbits.log").read_text()[-3000:])
            try:
                httpx.get(f"{url}/api/v1/health", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("LNbits did not start") from None
                time.sleep(0.2)
        # LNbits 1.6 redirects everything to /first_install until the super user exists.
        response = httpx.put(
            f"{url}/api/v1/auth/first_install",
            json={"username": "admin", "password": _PASSWORD, "password_repeat": _PASSWORD},
            timeout=10,
        )
        response.raise_for_status()
        yield LnbitsServer(url=url, token=response.json()["access_token"])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
