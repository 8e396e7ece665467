"""Embed the DVM's job runner in your own program, piece by piece.

``JobRunner`` takes every piece it uses as an argument: keys, a relay pool, an engine, image
hosts, a ledger, and optional hooks for pricing, payment and results. Here the relay pool is
an in-memory stand-in (your own relay code would take its place), the engine is the tiny
random-weight model (its pictures are noise), the host is a local folder, and a toy payment
check "receives" each payment half a second after the invoice is issued.

    .venv/bin/python examples/embed_runner.py

Runs offline; needs the engine extra (torch, diffusers).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nostr_imagegen import Event, Filter, ImageJob, Keys, parse_feedback, parse_result
from nostr_imagegen.engine import Engine, EngineConfig
from nostr_imagegen.service import (
    Announcement,
    JobRunner,
    Ledger,
    LocalFolderHost,
    RunnerOptions,
    build_request,
)
from nostr_imagegen.testing import build_tiny_pipeline


@dataclass(frozen=True)
class Published:
    ok: bool


class MemoryPool:
    """What the runner needs from a relay pool. Replace with your own relay code."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[tuple[str, Event]] = asyncio.Queue()
        self.outgoing: asyncio.Queue[Event] = asyncio.Queue()

    async def subscribe(
        self, subscription_id: str, filters: Sequence[Filter], *, lookback_s: int | None = None
    ) -> None:
        print(f"[pool] subscribe {subscription_id}: {[f.to_dict() for f in filters]}")

    async def publish(
        self, event: Event, *, relays: Sequence[str] | None = None, timeout_s: float = 10.0
    ) -> Published:
        await self.outgoing.put(event)
        return Published(ok=True)  # "a relay accepted it"

    async def events(self) -> AsyncIterator[tuple[str, Event]]:
        while True:
            yield await self.incoming.get()


class ToyWallet:
    """A ``PaymentCheck``: issue an invoice, then report it paid."""

    async def invoice(self, job: ImageJob, amount_msats: int) -> str | None:
        return "lnbc210n1toyinvoice"

    async def wait_paid(self, job: ImageJob, amount_msats: int, bolt11: str | None) -> bool:
        await asyncio.sleep(0.5)
        print(f"[wallet] {amount_msats} msats received for {job.id[:12]}")
        return True


def price(job: ImageJob) -> int | None:
    """The operator's pricing hook: big images cost 21 sats, small ones are free."""
    width, height = job.size or (64, 64)
    return 21_000 if width * height > 64 * 64 else None


async def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="embed-runner-"))
    folder = build_tiny_pipeline(workdir / "tiny", seed=0)
    engine = Engine(
        EngineConfig.from_mapping(
            {
                "models": {
                    "tiny": {"source": str(folder), "family": "sd15", "steps": 2,
                             "native_size": 64}
                },
                "device": "cpu",
            }
        )
    )  # fmt: skip
    dvm, customer = Keys.generate(), Keys.generate()
    pool = MemoryPool()
    results: list[Event] = []

    with Ledger(workdir / "ledger.sqlite3") as ledger:
        runner = JobRunner(
            keys=dvm,
            pool=pool,
            engine=engine,
            hosts=[LocalFolderHost(workdir / "images", "https://images.example.org")],
            ledger=ledger,
            pricing=price,
            payment_check=ToyWallet(),
            queue_size=4,
            options=RunnerOptions(progress_interval_s=0.0),
            announcement=Announcement(name="Embedded DVM", about="tiny noise pictures"),
            on_result=lambda job, event: print(f"[hook] on_result for {job.id[:12]}"),
        )
        async with runner:  # resumes the ledger, subscribes, announces, starts the worker
            free = build_request(customer, prompt="a free sketch", params=[("size", "64x64")])
            paid = build_request(customer, prompt="a paid poster", params=[("size", "128x128")])
            for request in (free, paid):
                await pool.incoming.put(("memory://", request))
            while len(results) < 2:
                event = await pool.outgoing.get()
                if event.kind == 7000:
                    feedback = parse_feedback(event)
                    note = feedback.message or f"{feedback.amount_msats} msats"
                    print(f"[feedback] {feedback.request_id[:12]} {feedback.raw_status}: {note}")
                elif event.kind == 31990:
                    print(f"[announce] kind 31990: {event.content[:80]}...")
                elif event.kind == 6100:
                    results.append(event)
                    parsed = parse_result(event)
                    print(f"[result] {parsed.request_id[:12]} -> {parsed.urls[0]}")
        print(f"ledger: {ledger.counts()}")
        print(f"files: {sorted(p.name for p in (workdir / 'images').iterdir())}")
    shutil.rmtree(workdir)


if __name__ == "__main__":
    asyncio.run(main())
