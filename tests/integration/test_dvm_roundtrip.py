"""The DVM end to end on a real relay (nostr-relay): plain and encrypted round trips, two
relays, the submit command as a customer."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from dvm_harness import (  # noqa: F401 - fixtures
    Customer,
    Dvm,
    query_relay,
    tiny_engine_fixture,
    tiny_model_folder_fixture,
)
from PIL import Image

from nostr_imagegen.errors import EncryptionError
from nostr_imagegen.imagejob.request import parse_image_job
from nostr_imagegen.imagejob.results import parse_result
from nostr_imagegen.nostr.encryption import EncryptionScheme
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.client import build_request
from nostr_imagegen.service.ledger import JobState

pytestmark = pytest.mark.integration

PROMPT = "A purple ostrich watching the sunset"
EXAMPLE_PARAMS = (("ratio", "4:3"), ("negative_prompt", "broken hands, bad quality"))


async def _download(url: str) -> bytes:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    response.raise_for_status()
    return response.content


async def test_the_kind_5100_example_round_trip(
    relay_url: str, tmp_path: Path, tiny_engine: Any
) -> None:
    async with Dvm([relay_url], tmp_path, tiny_engine) as dvm, Customer([relay_url]) as customer:
        request = build_request(customer.keys, prompt=PROMPT, params=EXAMPLE_PARAMS)
        outcome = await customer.submit(request, provider=dvm.keys.public_key)
        assert outcome.error is None
        assert outcome.result is not None
        assert outcome.result.pubkey == dvm.keys.public_key
        assert outcome.result.kind == 6100
        assert json.loads(outcome.result.tag_value("request") or "") == request.to_dict()
        [url] = outcome.urls
        [link] = outcome.parsed.images if outcome.parsed else ()
        data = await _download(url)
        assert hashlib.sha256(data).hexdigest() == link.sha256
        picture = Image.open(io.BytesIO(data))
        assert picture.format == "PNG"
        assert (picture.width, picture.height) == (link.width, link.height)
        planned = tiny_engine.plan(parse_image_job(request)).dimensions
        assert (picture.width, picture.height) == (planned.output_width, planned.output_height)
        statuses = [parsed.raw_status for _, parsed in outcome.feedback]
        assert statuses[0] == "processing"
        # The result is stored on the relay for customers who come back later.
        stored = await query_relay(relay_url, {"kinds": [6100], "#e": [request.id]})
        assert [event.id for event in stored] == [outcome.result.id]
        await dvm.wait_state(request.id, JobState.PUBLISHED)


@pytest.mark.parametrize("scheme", [EncryptionScheme.NIP44, EncryptionScheme.NIP04])
async def test_encrypted_request_round_trip(
    relay_url: str, tmp_path: Path, tiny_engine: Any, scheme: EncryptionScheme
) -> None:
    secret_prompt = f"a secret ostrich for {scheme.value}"
    async with Dvm([relay_url], tmp_path, tiny_engine) as dvm, Customer([relay_url]) as customer:
        request = build_request(
            customer.keys,
            prompt=secret_prompt,
            params=(("size", "64x64"),),
            provider=dvm.keys.public_key,
            encryption=scheme,
        )
        assert secret_prompt not in request.to_json()
        outcome = await customer.submit(request, provider=dvm.keys.public_key)
        assert outcome.result is not None, outcome.error
        assert outcome.result.first_tag("encrypted") == ("encrypted",)
        assert outcome.parsed is not None
        assert outcome.parsed.encrypted
        [url] = outcome.urls
        assert url.startswith("http://127.0.0.1:")
        # What anyone can read on the relay: no prompt, no image link in the clear.
        for event in await query_relay(relay_url, {"#e": [request.id]}):
            assert secret_prompt not in event.to_json()
            assert url not in event.to_json()
        # Only the customer can read the answer.
        with pytest.raises(EncryptionError):
            parse_result(outcome.result, keys=Keys.generate())


async def test_same_request_on_two_relays_gets_exactly_one_result(
    relay_factory: Any, tmp_path: Path, tiny_engine: Any
) -> None:
    first, second = relay_factory(), relay_factory()
    urls = [first.url, second.url]
    async with Dvm(urls, tmp_path, tiny_engine) as dvm, Customer(urls) as customer:
        request = build_request(customer.keys, prompt=PROMPT, params=(("size", "64x64"),))
        outcome = await customer.submit(request)
        assert outcome.result is not None, outcome.error
        await dvm.wait_state(request.id, JobState.PUBLISHED)
        assert dvm.ledger is not None
        claims = [s for s, _, _ in dvm.ledger.history(request.id) if s is JobState.RECEIVED]
        assert len(claims) == 1
    # Everything the DVM had to say is said once it stopped; each relay holds one result.
    for url in urls:
        stored = await query_relay(url, {"kinds": [6100], "#e": [request.id]})
        assert [event.id for event in stored] == [outcome.result.id]


async def test_submit_command_is_a_customer(
    relay_url: str, tmp_path: Path, tiny_engine: Any
) -> None:
    async with Dvm([relay_url], tmp_path, tiny_engine) as dvm:
        for extra in ([], ["--encrypt", "--scheme", "nip04"]):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "nostr_imagegen.cli", "submit",
                "--relay", relay_url, "--prompt", PROMPT,
                "--param", "size", "64x64", "--param", "negative_prompt", "bad quality",
                "--provider", dvm.keys.npub, "--timeout", "60", *extra,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "NOSTR_IMAGEGEN_CUSTOMER_NSEC": ""},
            )  # fmt: skip
            stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
            assert process.returncode == 0, stderr.decode()
            lines = [json.loads(line) for line in stdout.decode().splitlines()]
            assert lines[-1]["type"] == "result"
            assert lines[-1]["provider"] == dvm.keys.public_key
            assert lines[-1]["urls"][0].startswith("http://127.0.0.1:")
            assert all(line["type"] == "feedback" for line in lines[:-1])
            assert "result:" in stderr.decode()
        # A job the DVM refuses: exit 2 with its reason.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nostr_imagegen.cli", "submit",
            "--relay", relay_url, "--prompt", PROMPT, "--param", "model", "no-such-model",
            "--provider", dvm.keys.public_key, "--timeout", "60",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
        assert process.returncode == 2
        last = json.loads(stdout.decode().splitlines()[-1])
        assert last["type"] == "error"
        assert "no-such-model" in last["reason"]
        assert "no-such-model" in stderr.decode()


async def test_submit_command_times_out_without_a_provider(relay_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nostr_imagegen.cli", "submit",
        "--relay", relay_url, "--prompt", PROMPT, "--timeout", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 4
    assert json.loads(stdout.decode().splitlines()[-1])["type"] == "error"
    assert "timed out" in stderr.decode()


async def test_submit_command_refuses_encryption_without_provider() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nostr_imagegen.cli", "submit",
        "--relay", "ws://127.0.0.1:9", "--prompt", PROMPT, "--encrypt",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "--encrypt needs --provider" in stderr.decode()
