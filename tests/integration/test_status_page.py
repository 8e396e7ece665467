"""The status page in a real headless Chromium (Debian's, driven by Playwright): loaded while
jobs run, it shows the running and queued jobs, the finished ones with thumbnails (none, and
no prompt, for an encrypted job), the relay states, and it refreshes by itself.

Set ``STATUS_PAGE_SCREENSHOT=docs/status-page.png`` to write the screenshot the docs show.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from dvm_harness import (  # noqa: F401 - fixtures
    Customer,
    Dvm,
    GatedEngine,
    tiny_engine_fixture,
    tiny_model_folder_fixture,
)

from nostr_imagegen.nostr.encryption import EncryptionScheme
from nostr_imagegen.service.client import build_request
from nostr_imagegen.service.ledger import JobState
from nostr_imagegen.service.metrics import OpsServer, ServiceMetrics

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser_page(tmp_path: Path) -> Any:
    playwright_api = pytest.importorskip("playwright.async_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/setup installs it)")
    async with playwright_api.async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a new, empty user-data-dir
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1100, "height": 900},
        )
        try:
            yield await context.new_page()
        finally:
            await context.close()


async def test_the_status_page_shows_jobs_while_they_run(
    relay_url: str, tmp_path: Path, tiny_engine: Any, browser_page: Any
) -> None:
    engine = GatedEngine(tiny_engine)
    engine.gate.set()  # the first jobs run straight through
    metrics = ServiceMetrics()
    async with (
        Dvm([relay_url], tmp_path, engine, **metrics.hooks()) as dvm,
        Customer([relay_url]) as customer,
    ):
        metrics.attach(dvm.runner, dvm.pool)
        provider = dvm.keys.public_key
        done = build_request(customer.keys, prompt="a purple ostrich at sunset")
        secret = build_request(
            customer.keys, prompt="a secret ostrich", provider=provider,
            encryption=EncryptionScheme.NIP44,
        )  # fmt: skip
        for request in (done, secret):
            outcome = await customer.submit(request, provider=provider)
            assert outcome.error is None
        engine.gate.clear()  # now hold the next job in the engine
        engine.started.clear()
        running = build_request(customer.keys, prompt="an ostrich being painted right now")
        queued = build_request(customer.keys, prompt="an ostrich waiting its turn")
        tasks = [
            asyncio.create_task(customer.submit(r, provider=provider)) for r in (running, queued)
        ]
        await asyncio.to_thread(engine.started.wait, 20)
        await dvm.wait_state(queued.id, JobState.QUEUED)

        async with OpsServer(metrics, "127.0.0.1", 0) as server:
            page = browser_page
            await page.goto(server.url + "/")
            await page.wait_for_selector(f'#active tr[data-job="{queued.id}"]')
            active = await page.inner_text("#active")
            assert "an ostrich being painted right now" in active
            assert "running" in active
            assert "an ostrich waiting its turn" in active
            assert "queued #1" in active
            assert "connected" in await page.inner_text("#relays")
            assert await page.inner_text("#health") == "ok"

            done_row = page.locator(f'#recent tr[data-job="{done.id}"]')
            assert "a purple ostrich at sunset" in await done_row.inner_text()
            thumb = done_row.locator("img.thumb")
            await page.wait_for_function(
                "(id) => { const img = document.querySelector(`#recent tr[data-job='${id}'] img`);"
                " return img && img.complete && img.naturalWidth > 0; }",
                arg=done.id,
            )
            assert (await thumb.get_attribute("src") or "").startswith(dvm.server.url)  # type: ignore[union-attr]
            secret_row = page.locator(f'#recent tr[data-job="{secret.id}"]')
            assert "(encrypted)" in await secret_row.inner_text()
            assert "a secret ostrich" not in await page.content()
            assert await secret_row.locator("img").count() == 0

            shot = os.environ.get("STATUS_PAGE_SCREENSHOT")
            await page.screenshot(path=shot or str(tmp_path / "status.png"), full_page=True)

            engine.gate.set()  # let them finish: the page follows without a reload
            for task in tasks:
                assert (await task).error is None
            await page.wait_for_function(
                "(id) => !document.querySelector(`#active tr[data-job='${id}']`)",
                arg=queued.id,
                timeout=15_000,
            )
            assert await page.inner_text("#succeeded") == "4"
