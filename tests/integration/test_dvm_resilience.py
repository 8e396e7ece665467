"""The DVM when things go wrong around it, on real relays: a relay crashes mid-job, the DVM
itself is killed mid-job, customers cancel, the queue fills up."""

from __future__ import annotations

import asyncio
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
    GatedEngine,
    query_relay,
    tiny_engine_fixture,
    tiny_model_folder_fixture,
)

from nostr_imagegen.imagejob.results import JobStatus
from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.client import build_request
from nostr_imagegen.service.ledger import JobState

pytestmark = pytest.mark.integration

SMALL = (("size", "64x64"),)


async def test_relay_killed_while_a_job_runs_and_restarted_the_result_still_arrives(
    relay: Any, tmp_path: Path, tiny_engine: Any
) -> None:
    gated = GatedEngine(tiny_engine)
    async with Dvm([relay.url], tmp_path, gated) as dvm, Customer([relay.url]) as customer:
        request = build_request(customer.keys, prompt="through a crash", params=SMALL)
        waiting = asyncio.create_task(customer.submit(request, timeout_s=90))
        await asyncio.to_thread(gated.started.wait, 30)
        await dvm.wait_state(request.id, JobState.PROCESSING)
        await asyncio.to_thread(relay.stop, kill=True)  # SIGKILL: the relay crashes
        gated.gate.set()  # the job finishes while no relay is up
        await dvm.wait_state(request.id, JobState.UPLOADED)  # signed, stored, not delivered
        await asyncio.to_thread(relay.start)
        outcome = await waiting
        assert outcome.result is not None, outcome.error
        await dvm.wait_state(request.id, JobState.PUBLISHED)
        stored = await query_relay(relay.url, {"kinds": [6100], "#e": [request.id]})
        assert [event.id for event in stored] == [outcome.result.id]


def _serve_config(tmp_path: Path, relay_url: str, model: Path) -> Path:
    config = tmp_path / "dvm.toml"
    config.write_text(
        f"""
device = "cpu"

[models.tiny]
source = "{model}"
family = "sd15"
native_size = 64
steps = 2

[limits]
max_steps = 200

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
"""
    )
    return config


def _ledger_row(path: Path, request_id: str) -> tuple[str, int] | None:
    """State and attempts, read from outside the DVM process (WAL allows a reader)."""
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT state, attempts FROM jobs WHERE request_id = ?", (request_id,)
        ).fetchone()
    except sqlite3.OperationalError:
        return None  # schema not created yet
    finally:
        db.close()
    return None if row is None else (row[0], row[1])


async def _start_serve(config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "NOSTR_IMAGEGEN_NSEC": ""}
    with log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nostr_imagegen.cli", "serve", "--config", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr, env=env,
        )  # fmt: skip


async def test_dvm_killed_mid_job_and_restarted_answers_exactly_once(
    relay: Any, tmp_path: Path, tiny_model_folder: Path
) -> None:
    dvm_keys = Keys.generate()
    (tmp_path / "dvm.key").write_text(dvm_keys.nsec() + "\n")
    os.chmod(tmp_path / "dvm.key", 0o600)
    config = _serve_config(tmp_path, relay.url, tiny_model_folder)
    ledger = tmp_path / "ledger.sqlite3"

    async with Customer([relay.url]) as customer:
        # Big enough that the job is still running when the process is killed.
        request = build_request(
            customer.keys,
            prompt="survives a crash",
            params=(("size", "128x128"), ("steps", "150")),
            provider=dvm_keys.public_key,
        )
        log = tmp_path / "serve.log"
        first = await _start_serve(config, log)
        try:
            waiting = asyncio.create_task(
                customer.submit(request, provider=dvm_keys.public_key, timeout_s=150)
            )
            async with asyncio.timeout(90):
                while _ledger_row(ledger, request.id) != ("processing", 1):
                    assert first.returncode is None, log.read_text()
                    await asyncio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            await first.wait()
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
        assert _ledger_row(ledger, request.id) == ("processing", 1)  # killed mid-job

        second = await _start_serve(config, log)
        try:
            outcome = await waiting
            assert outcome.result is not None, outcome.error
            async with asyncio.timeout(30):
                while _ledger_row(ledger, request.id) != ("published", 2):
                    await asyncio.sleep(0.05)
        finally:
            second.send_signal(signal.SIGTERM)  # graceful: exits 0
            await asyncio.wait_for(second.wait(), 60)
        assert second.returncode == 0, log.read_text()
        assert "stopped" in log.read_text()
    stored = await query_relay(relay.url, {"kinds": [6100], "#e": [request.id]})
    assert [event.id for event in stored] == [outcome.result.id]


async def test_customer_cancels_a_queued_job(
    relay_url: str, tmp_path: Path, tiny_engine: Any
) -> None:
    gated = GatedEngine(tiny_engine)
    async with Dvm([relay_url], tmp_path, gated) as dvm, Customer([relay_url]) as customer:
        running = build_request(customer.keys, prompt="running", params=SMALL)
        queued = build_request(customer.keys, prompt="queued", params=SMALL)
        first = asyncio.create_task(customer.submit(running))
        await asyncio.to_thread(gated.started.wait, 30)
        second = asyncio.create_task(customer.submit(queued, timeout_s=30))
        await dvm.wait_state(queued.id, JobState.QUEUED)
        deletion = sign_event(
            UnsignedEvent(kind=5, tags=(("e", queued.id), ("k", "5100")), content="changed mind"),
            customer.keys,
        )
        assert (await customer.pool.publish(deletion)).ok
        await dvm.wait_state(queued.id, JobState.CANCELLED)
        gated.gate.set()
        outcome = await first
        assert outcome.result is not None, outcome.error
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        assert queued.id not in gated.calls
    assert await query_relay(relay_url, {"kinds": [6100], "#e": [queued.id]}) == []


async def test_full_queue_answers_busy(relay_url: str, tmp_path: Path, tiny_engine: Any) -> None:
    gated = GatedEngine(tiny_engine)
    async with (
        Dvm([relay_url], tmp_path, gated, queue_size=1) as dvm,
        Customer([relay_url]) as customer,
    ):
        jobs = [build_request(customer.keys, prompt=f"job {i}", params=SMALL) for i in range(3)]
        running = asyncio.create_task(customer.submit(jobs[0]))
        await asyncio.to_thread(gated.started.wait, 30)
        waiting = asyncio.create_task(customer.submit(jobs[1]))
        await dvm.wait_state(jobs[1].id, JobState.QUEUED)
        busy = await customer.submit(jobs[2])
        assert busy.result is None
        assert busy.error is not None
        assert "busy" in busy.error
        gated.gate.set()
        for task in (running, waiting):
            outcome = await task
            assert outcome.result is not None, outcome.error
            positions = [p.message for _, p in outcome.feedback if p.status is JobStatus.PROCESSING]
            assert positions
        queued_outcome = waiting.result()
        assert any("queued: position 1" in (p.message or "") for _, p in queued_outcome.feedback)
