"""How long a Lightning payment takes to turn into `processing`, through a real LNbits.

    python benchmarks/bench_payment.py [--jobs 10]

Everything runs on 127.0.0.1 in one go: LNbits 1.6 (FakeWallet) from ``.venv-lnbits``
(``.ci/setup`` makes it), a ``nostr-relay``, a ``JobRunner`` pricing every job at 21 sats
with an ``LnbitsBackend``, and a customer (``JobClient``) paying from a second LNbits
wallet with ``LnbitsPayer``. The engine is a stand-in returning an 8x8 image: what is
measured happens before any generation.

For each job: t0 just before the customer's wallet is asked to pay the invoice, t1 when the
customer holds the `processing` feedback that follows the payment. Reported: median and p95
of t1 - t0, first with LNbits' websocket as the settlement hint (the default), then with
polling only (``poll_interval_s`` 2 s), and their ratio. **Target: median under 1 s with the
websocket.** t1 - t0 includes the payment call itself, two relay hops and the ledger writes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from nostr_imagegen import Keys
from nostr_imagegen.service import (
    JobClient,
    JobRunner,
    Ledger,
    LnbitsBackend,
    LnbitsPayer,
    LocalFolderHost,
    LocalRelay,
    PaymentSettings,
    RelayPool,
    RunnerOptions,
    build_request,
)

ROOT = Path(__file__).resolve().parent.parent
PRICE_MSATS = 21_000


@dataclass
class _Result:
    images: tuple[Image.Image, ...]
    seed: int = 0
    model: str = "stand-in"


@dataclass(frozen=True)
class _Named:
    name: str


@dataclass(frozen=True)
class _Offer:
    models: tuple[_Named, ...] = (_Named("stand-in"),)
    loras: tuple[_Named, ...] = ()
    ratios: tuple[Any, ...] = ()


@dataclass
class StandInEngine:
    calls: list[str] = field(default_factory=list)

    def plan(self, job: Any) -> None:
        return None

    def generate(self, job: Any, **kwargs: Any) -> _Result:
        return _Result((Image.new("RGB", (8, 8), "purple"),))

    def offered(self) -> _Offer:
        return _Offer()


def start_lnbits(folder: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    venv = ROOT / ".venv-lnbits"
    site = sorted(venv.glob("lib/python3*/site-packages"))
    if not (venv / "bin" / "lnbits").exists() or not site:
        sys.exit("LNbits is not installed in .venv-lnbits: run .ci/setup")
    port = _free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "lnbits.log").open("wb")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder),
        "LNBITS_DATA_FOLDER": str(folder / "data"), "LNBITS_BACKEND_WALLET_CLASS": "FakeWallet",
        "LNBITS_ADMIN_UI": "true", "LNBITS_RATE_LIMIT_NO": "1000000",
        "LNBITS_PRICE_AGGREGATOR_ENABLED": "false", "LNBITS_EXCHANGE_RATE_PROVIDERS": "[]",
        "LNBITS_EXTENSIONS_MANIFESTS": "[]",
    }  # fmt: skip
    process = subprocess.Popen(
        [str(venv / "bin" / "lnbits"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=site[0], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(f"{url}/api/v1/health", timeout=2)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                sys.exit("LNbits did not start:\n" + (folder / "lnbits.log").read_text()[-2000:])
            time.sleep(0.2)
    password = "bench-password"
    token = httpx.put(
        f"{url}/api/v1/auth/first_install",
        json={"username": "admin", "password": password, "password_repeat": password},
        timeout=10,
    ).json()["access_token"]
    return process, url, token


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wallet(url: str, token: str, name: str, fund_sats: int = 0) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    created: dict[str, Any] = httpx.post(
        f"{url}/api/v1/account", json={"name": name}, headers=auth, timeout=10
    ).json()
    if fund_sats:
        httpx.put(
            f"{url}/users/api/v1/balance",
            json={"id": created["id"], "amount": fund_sats},
            headers=auth,
            timeout=10,
        ).raise_for_status()
    return created


async def measure(
    relay_url: str, work: Path, lnbits_url: str, operator: dict[str, Any], payer: LnbitsPayer,
    *, websocket: bool, jobs: int,
) -> list[float]:  # fmt: skip
    keys, customer = Keys.generate(), Keys.generate()
    backend = LnbitsBackend(lnbits_url, operator["inkey"], websocket=websocket, poll_interval_s=2.0)
    folder = work / f"images-{websocket}"
    folder.mkdir()
    latencies: list[float] = []
    with Ledger(work / f"ledger-{websocket}.sqlite3") as ledger:
        async with (
            RelayPool([relay_url], keys=keys) as dvm_pool,
            RelayPool([relay_url], keys=customer) as customer_pool,
        ):
            runner = JobRunner(
                keys=keys, pool=dvm_pool, engine=StandInEngine(),
                hosts=[LocalFolderHost(folder, "http://127.0.0.1:9/")], ledger=ledger,
                options=RunnerOptions(progress_interval_s=60, allow_private_relays=True),
                pricing=lambda job: PRICE_MSATS, invoices=backend,
                payment_settings=PaymentSettings(timeout_s=60),
            )  # fmt: skip
            await runner.start()
            await dvm_pool.wait_connected(timeout_s=10)
            await customer_pool.wait_connected(timeout_s=10)
            try:
                async with JobClient(customer_pool, customer) as client:
                    for number in range(jobs):
                        marks: dict[str, float] = {}

                        async def pay(
                            bolt11: str, max_msats: int | None, marks: dict[str, float] = marks
                        ) -> None:
                            marks["paid"] = time.perf_counter()
                            await payer(bolt11, max_msats)

                        def feedback(
                            event: Any, parsed: Any, marks: dict[str, float] = marks
                        ) -> None:
                            if parsed.raw_status == "processing" and "paid" in marks:
                                marks.setdefault("processing", time.perf_counter())

                        request = build_request(customer, prompt=f"bench {number}")
                        outcome = await client.submit(
                            request, timeout_s=60, payer=pay, on_feedback=feedback
                        )
                        if outcome.result is None or "processing" not in marks:
                            sys.exit(f"job {number} failed: {outcome.error}")
                        latencies.append(marks["processing"] - marks["paid"])
            finally:
                await runner.stop()
                await backend.aclose()
    return latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        process, url, token = start_lnbits(work / "lnbits")
        relay = LocalRelay(work / "relay")
        await asyncio.to_thread(relay.start)
        try:
            operator = wallet(url, token, "dvm")
            payer = LnbitsPayer(url, wallet(url, token, "customer", fund_sats=10_000)["adminkey"])
            results = {}
            for websocket in (True, False):
                results[websocket] = await measure(
                    relay.url, work, url, operator, payer, websocket=websocket, jobs=args.jobs
                )
            await payer.aclose()
        finally:
            await asyncio.to_thread(relay.stop)
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(15)
    for websocket, values in results.items():
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        label = "websocket hint + REST check" if websocket else "polling every 2 s only"
        print(
            f"payment -> processing, {label}: median {statistics.median(values) * 1000:.0f} ms,"
            f" p95 {p95 * 1000:.0f} ms over {len(values)} jobs"
        )
    ratio = statistics.median(results[False]) / statistics.median(results[True])
    print(f"polling / websocket median ratio: {ratio:.1f}x")
    met = statistics.median(results[True]) < 1
    print(f"target (median < 1 s with the websocket): {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
