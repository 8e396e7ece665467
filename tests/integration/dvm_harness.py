"""Fixtures and helpers for the DVM integration tests: a tiny engine built once per session,
an in-process DVM and customer on real relays, raw relay queries.

Test modules import the fixture functions they use (``from dvm_harness import
tiny_engine_fixture``; the fixture is named ``tiny_engine``), so they are shared without
touching the integration conftest.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest
import websockets

from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.nostr.event import Event, parse_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.client import JobClient, JobOutcome
from nostr_imagegen.service.ledger import JobState, Ledger
from nostr_imagegen.service.relay import RelayPool
from nostr_imagegen.service.runner import JobRunner, RunnerOptions
from nostr_imagegen.service.seams import OfferLike
from nostr_imagegen.service.upload import FolderServer, LocalFolderHost, serve_folder

if TYPE_CHECKING:
    from nostr_imagegen.engine.generate import Engine

#: Options for tests: quick progress, quick outbox retries, short shutdown.
TEST_OPTIONS = RunnerOptions(
    progress_interval_s=0.2,
    republish_interval_s=0.3,
    shutdown_timeout_s=5.0,
    publish_timeout_s=3.0,
    allow_private_relays=True,
)


def tiny_engine_data(folder: Path, **extra: Any) -> dict[str, Any]:
    """Engine configuration data offering the tiny SD 1.5 model as ``tiny``."""
    data: dict[str, Any] = {
        "models": {
            "tiny": {
                "source": str(folder),
                "family": "sd15",
                "default": True,
                "steps": 2,
                "guidance_scale": 5.0,
                "native_size": 64,
            }
        },
        "limits": {"max_steps": 200},
        "device": "cpu",
    }
    data.update(extra)
    return data


@pytest.fixture(scope="session", name="tiny_model_folder")
def tiny_model_folder_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight SD 1.5 pipeline, built once per session (nostr_imagegen.testing)."""
    import torch

    from nostr_imagegen.imagejob.dimensions import ModelFamily
    from nostr_imagegen.testing import build_tiny_pipeline

    torch.set_num_threads(1)
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "sd15", ModelFamily.SD15, seed=0)


@pytest.fixture(scope="session", name="tiny_engine")
def tiny_engine_fixture(tiny_model_folder: Path) -> Any:
    """One loaded ``Engine`` over the tiny model, shared by the session's tests."""
    from nostr_imagegen.engine.generate import Engine
    from nostr_imagegen.engine_config import EngineConfig

    engine = Engine(EngineConfig.from_mapping(tiny_engine_data(tiny_model_folder)))
    engine.warm()
    return engine


class GatedEngine:
    """Wraps an engine: each job waits for ``gate`` (honouring cancellation) before running,
    so a test can act while a job is known to be running."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls: list[str] = []

    def generate(self, job: ImageJob, **kwargs: Any) -> Any:
        from nostr_imagegen.errors import JobCancelled

        self.calls.append(job.id)
        self.started.set()
        cancel: threading.Event | None = kwargs.get("cancel")
        while not self.gate.wait(0.02):
            if cancel is not None and cancel.is_set():
                raise JobCancelled("cancelled while waiting at the gate")
        return self.engine.generate(job, **kwargs)

    def plan(self, job: ImageJob) -> object:
        return self.engine.plan(job)

    def offered(self) -> OfferLike:
        return self.engine.offered()


class Dvm:
    """A DVM in this process: ``JobRunner`` on real relays, a local-folder image host served
    on 127.0.0.1, a ledger file. ``async with Dvm(...) as dvm``."""

    def __init__(
        self,
        relays: Sequence[str],
        workdir: Path,
        engine: Any,
        *,
        keys: Keys | None = None,
        options: RunnerOptions = TEST_OPTIONS,
        chain_wait_s: float | None = None,
        **runner_kwargs: Any,
    ) -> None:
        self.relays = list(relays)
        self.workdir = workdir
        self.engine = engine
        self.keys = keys or Keys.generate()
        self.options = options
        self.runner_kwargs = runner_kwargs
        #: Resolve `job`/`event` inputs from the relays, waiting this long (None: rejected).
        self.chain_wait_s = chain_wait_s
        self.images = workdir / "images"
        self.ledger_path = workdir / "ledger.sqlite3"
        self.server: FolderServer | None = None
        self.ledger: Ledger | None = None
        self.pool: RelayPool | None = None
        self.runner: JobRunner | None = None

    async def __aenter__(self) -> Dvm:
        self.images.mkdir(parents=True, exist_ok=True)
        self.server = serve_folder(self.images)
        self.ledger = Ledger(self.ledger_path)
        self.pool = RelayPool(
            self.relays, keys=self.keys, backoff_base_s=0.2, backoff_max_s=1.0,
            extra_relays_public_only=False,
        )  # fmt: skip
        await self.pool.start()
        if self.chain_wait_s is not None:
            from nostr_imagegen.service.chaining import ChainResolver

            resolver = ChainResolver(self.pool, wait_s=self.chain_wait_s)
            self.runner_kwargs.setdefault("input_resolver", resolver)
        self.runner = JobRunner(
            keys=self.keys,
            pool=self.pool,
            engine=self.engine,
            hosts=[LocalFolderHost(self.images, self.server.url)],
            ledger=self.ledger,
            options=self.options,
            **self.runner_kwargs,
        )
        await self.runner.start()
        await self.pool.wait_connected(timeout_s=10, all_relays=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.runner is not None:
            await self.runner.stop()
        if self.pool is not None:
            await self.pool.close()
        if self.ledger is not None:
            self.ledger.close()
        if self.server is not None:
            self.server.close()

    def state(self, request_id: str) -> JobState | None:
        assert self.ledger is not None
        return self.ledger.state(request_id)

    async def wait_state(self, request_id: str, *states: JobState, timeout_s: float = 30) -> None:
        async with asyncio.timeout(timeout_s):
            while self.state(request_id) not in states:
                await asyncio.sleep(0.02)


class Customer:
    """A customer: its own pool on the relays and a ``JobClient``."""

    def __init__(self, relays: Sequence[str], keys: Keys | None = None) -> None:
        self.keys = keys or Keys.generate()
        self.pool = RelayPool(list(relays), keys=self.keys, backoff_base_s=0.2, backoff_max_s=1.0)
        self.client = JobClient(self.pool, self.keys)

    async def __aenter__(self) -> Customer:
        await self.pool.start()
        await self.pool.wait_connected(timeout_s=10, all_relays=True)
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.__aexit__(*exc_info)
        await self.pool.close()

    async def submit(self, request: Event, **kwargs: Any) -> JobOutcome:
        kwargs.setdefault("timeout_s", 60.0)
        return await self.client.submit(request, **kwargs)


async def query_relay(url: str, filter_: dict[str, Any], timeout_s: float = 10.0) -> list[Event]:
    """Every stored event matching ``filter_`` on the relay at ``url`` (REQ until EOSE)."""
    sub_id = uuid.uuid4().hex[:16]
    events: list[Event] = []
    async with asyncio.timeout(timeout_s), websockets.connect(url) as ws:
        await ws.send(json.dumps(["REQ", sub_id, filter_]))
        while True:
            message = json.loads(await ws.recv())
            if message[0] == "EVENT" and message[1] == sub_id:
                events.append(parse_event(message[2]))
            elif message[0] == "EOSE" and message[1] == sub_id:
                return events


async def send_raw(url: str, event: dict[str, Any], timeout_s: float = 10.0) -> list[Any]:
    """Publish a raw (possibly invalid) event dict; returns the relay's OK message."""
    async with asyncio.timeout(timeout_s), websockets.connect(url) as ws:
        await ws.send(json.dumps(["EVENT", event]))
        while True:
            message = json.loads(await ws.recv())
            if message[0] == "OK":
                return list(message)


def results_on(events: Sequence[Event]) -> set[str]:
    return {event.id for event in events if event.kind == 6100}


def first(items: Iterator[Any]) -> Any:
    return next(items)
