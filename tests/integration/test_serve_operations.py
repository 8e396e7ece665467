"""``nostr-imagegen serve`` as operators run it: the [policy], [metrics] and [chaining]
sections wired in, and ``--log-format json`` writing one JSON object a line with the job id.
A real process, a real relay, the tiny model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from dvm_harness import Customer, tiny_model_folder_fixture  # noqa: F401 - fixtures
from prometheus_client.parser import text_string_to_metric_families

from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.client import build_request
from nostr_imagegen.service.localrelay import free_port

pytestmark = pytest.mark.integration


def _config(folder: Path, model: Path, relay: str, metrics_port: int) -> Path:
    path = folder / "dvm.toml"
    path.write_text(
        f"""
device = "cpu"
[models.tiny]
source = "{model}"
family = "sd15"
default = true
steps = 2
native_size = 64

[service]
relays = ["{relay}"]
ledger = "ledger.sqlite3"
allow_private_relays = true

[[storage]]
type = "local"
folder = "images"
listen = "127.0.0.1:{free_port()}"

[announce]
enabled = false

[policy]
max_jobs_per_minute = 1

[metrics]
listen = "127.0.0.1:{metrics_port}"
"""
    )
    return path


async def _wait_http(url: str, timeout_s: float = 90.0) -> None:
    async with asyncio.timeout(timeout_s), httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)


async def test_serve_with_policy_metrics_and_json_logs(
    relay_url: str, tmp_path: Path, tiny_model_folder: Path
) -> None:
    provider = Keys.generate()
    port = free_port()
    config = _config(tmp_path, tiny_model_folder, relay_url, port)
    env = {**os.environ, "NOSTR_IMAGEGEN_NSEC": provider.nsec(), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "nostr_imagegen.cli", "-v", "serve", "--config",
               str(config), "--log-format", "json"]  # fmt: skip
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as err:
        process = subprocess.Popen(command, env=env, stderr=err, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        await _wait_http(base + "/healthz")
        async with Customer([relay_url]) as customer:
            first = build_request(customer.keys, prompt="a purple ostrich")
            second = build_request(customer.keys, prompt="another ostrich, right away")
            served = await customer.submit(first, provider=provider.public_key)
            assert served.error is None
            refused = await customer.submit(second, provider=provider.public_key)
            assert refused.error == "rate limit: at most 1 jobs per minute per customer"
        async with httpx.AsyncClient() as client:
            text = (await client.get(base + "/metrics")).text
            status = (await client.get(base + "/status.json")).json()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert samples[("nostr_imagegen_jobs_total", (("outcome", "succeeded"),))] == 1
        assert samples[("nostr_imagegen_policy_refusals_total", (("rule", "rate"),))] == 1
        assert samples[("nostr_imagegen_pipelines_loaded", ())] == 1
        assert [relay["connected"] for relay in status["relays"]] == [True]
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0
    lines = [line for line in stderr.read_text().splitlines() if line.strip()]
    records: list[dict[str, Any]] = []
    for line in lines:
        if line.startswith("{"):
            records.append(json.loads(line))  # every log line is one JSON object
        else:  # what libraries print past logging (transformers' notices), never our log
            assert not line.startswith(("INFO ", "WARNING ", "ERROR ", "DEBUG ")), line
    assert records
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    about_second = [r for r in records if r.get("job_id") == second.id]
    assert any("rate limit" in r["message"] for r in about_second)
    assert any(r.get("job_id") == first.id for r in records)
    assert provider.nsec() not in stderr.read_text()
