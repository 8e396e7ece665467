"""The Ray backend on a real local Ray cluster, started here on 127.0.0.1: two CPU worker
actors, tiny models of two families (SD 1.5 and SDXL layouts).

Through ``RaySlot`` directly: encoded images and progress come back, a running job is
cancelled, a worker killed with SIGKILL mid-job gives ``EngineUnavailable`` and rejoins once
Ray has restarted it. Through a real relay and the runner: a mixed-model burst is answered
exactly once, routed by model affinity; a job whose worker is killed is still answered once;
a customer's cancellation stops a job running on a worker.

One cluster for the module (it takes seconds to start, each worker imports diffusers).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("ray") is None:
    pytest.skip("the Ray backend needs the ray extra (pip install ray)", allow_module_level=True)

#: Ray reads its token settings when it is imported: before any import of it in this process.
#: The token lives in a file of its own (nothing written to ~/.ray); ended with the cluster.
_TOKEN_DIR = tempfile.mkdtemp(prefix="nig-ray-token-")
_TOKEN = Path(_TOKEN_DIR) / "token"
_TOKEN.write_text(secrets.token_hex(32))
_TOKEN.chmod(0o600)
_RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(_TOKEN)}
_ENV_BEFORE = {name: os.environ.get(name) for name in _RAY_ENV}
os.environ.update(_RAY_ENV)

import ray  # noqa: E402
from dvm_harness import Customer, Dvm, query_relay  # noqa: E402

from nostr_imagegen.engine_config import EngineConfig  # noqa: E402
from nostr_imagegen.errors import EngineUnavailable, JobCancelled, JobRejected  # noqa: E402
from nostr_imagegen.imagejob.model import ImageJob  # noqa: E402
from nostr_imagegen.imagejob.request import parse_image_job  # noqa: E402
from nostr_imagegen.nostr.event import UnsignedEvent, sign_event  # noqa: E402
from nostr_imagegen.nostr.keys import Keys  # noqa: E402
from nostr_imagegen.service.client import build_request  # noqa: E402
from nostr_imagegen.service.jobqueue import ActiveJob  # noqa: E402
from nostr_imagegen.service.ledger import JobState, StoredImage  # noqa: E402
from nostr_imagegen.service.ray import RaySlot, start_ray_workers  # noqa: E402
from nostr_imagegen.service.ray.cluster import disconnect, start_or_connect  # noqa: E402
from nostr_imagegen.service.scaling import RaySection  # noqa: E402
from nostr_imagegen.service.slots import EncodeSettings, EngineTask  # noqa: E402

pytestmark = pytest.mark.integration

WORKTREE = Path(__file__).resolve().parents[2]
SMALL = (("size", "64x64"),)
#: Steps that keep the tiny model busy for a few seconds: long enough to act mid-job.
LONG = (("size", "64x64"), ("steps", "150"))
MODELS = ("tiny", "tiny-xl")


# -- the cluster --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine_config(tmp_path_factory: pytest.TempPathFactory) -> EngineConfig:
    import torch

    from nostr_imagegen.imagejob.dimensions import ModelFamily
    from nostr_imagegen.testing import build_tiny_pipeline

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ray-models")
    common: dict[str, Any] = {"steps": 2, "guidance_scale": 5.0, "native_size": 64}
    sd15 = build_tiny_pipeline(root / "sd15", ModelFamily.SD15, seed=0)
    sdxl = build_tiny_pipeline(root / "sdxl", ModelFamily.SDXL, seed=0)
    return EngineConfig.from_mapping(
        {
            "models": {
                "tiny": {
                    "source": str(sd15),
                    "family": "sd15",
                    "default": True,
                    "max_batch": 2,
                    **common,
                },
                "tiny-xl": {"source": str(sdxl), "family": "sdxl", **common},
            },
            "limits": {"max_steps": 200},
            # One pipeline per worker: a job routed to the wrong worker costs a reload,
            # which the affinity test counts.
            "cache": {"max_models": 1},
            "device": "cpu",
        }
    )


def _ray_processes(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


@pytest.fixture(scope="module", autouse=True)
def _token_removed_afterwards() -> Iterator[None]:
    """The module's token file goes, and the environment is as before, whatever ran."""
    yield
    for name, value in _ENV_BEFORE.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(_TOKEN_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local Ray cluster on 127.0.0.1 with 2 CPUs, its token in ``_TOKEN``; every Ray
    process ended afterwards. Yields Ray's session folder."""
    # Short: Ray's unix sockets live under it (paths are limited to about 107 characters).
    session = tempfile.mkdtemp(prefix="nig-ray-", dir="/tmp")
    saved = dict(os.environ)
    os.environ.update(
        {
            # The workers import this checkout's code, and run torch on one thread each.
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(WORKTREE), os.environ.get("PYTHONPATH")) if p
            ),
            "OMP_NUM_THREADS": "1",
        }
    )
    try:
        assert start_or_connect(RaySection(), temp_dir=session, num_cpus=2)
        yield session
    finally:
        disconnect()
        os.environ.clear()
        os.environ.update(saved)
        for _ in range(100):
            if not _ray_processes(session):
                break
            threading.Event().wait(0.1)
        left = _ray_processes(session)
        shutil.rmtree(session, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"


@pytest.fixture(scope="module")
def workers(ray_cluster: str, engine_config: EngineConfig) -> Iterator[list[RaySlot]]:
    """Two CPU workers (one CPU each), restarted by Ray up to 3 times."""
    section = RaySection(workers=2, num_gpus=0, num_cpus=1, max_restarts=3)
    slots = start_ray_workers(engine_config, section, EncodeSettings(), torch_threads=1)
    yield slots
    for slot in slots:
        asyncio.run(slot.close())


@pytest.fixture
async def slots(workers: list[RaySlot], engine_config: EngineConfig) -> list[RaySlot]:
    """This test's views of the workers: slots bound to its event loop, the actors shared
    (and what they hold now)."""
    from nostr_imagegen.engine.planner import Planner

    planner = Planner(engine_config)
    views = []
    for slot in workers:
        loaded = frozenset((await slot.stats())["loaded_models"])
        views.append(
            RaySlot(slot.actor, name=slot.name, planner=planner, loaded=loaded, kill_on_close=False)
        )
    return views


# -- helpers ------------------------------------------------------------------------------


def make_job(prompt: str, params: Sequence[tuple[str, ...]] = SMALL) -> ImageJob:
    tags: list[tuple[str, ...]] = [("i", prompt, "text")]
    tags.extend(("param", *param) for param in params)
    return parse_image_job(sign_event(UnsignedEvent(kind=5100, tags=tuple(tags)), Keys.generate()))


class Steps:
    """A task's progress callback that remembers the steps and says when the first came."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.first = threading.Event()

    def __call__(self, step: int, total: int) -> None:
        self.seen.append((step, total))
        self.first.set()


def task(job: ImageJob, steps: Steps | None = None) -> EngineTask:
    return EngineTask(ActiveJob(job=job, relay=None, reply_relays=()), progress=steps)


async def wait_available(slot: RaySlot, timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not slot.available:
            await asyncio.sleep(0.1)


def decoded(image: StoredImage) -> Any:
    import hashlib

    from PIL import Image

    assert image.data is not None
    assert hashlib.sha256(image.data).hexdigest() == image.sha256
    with Image.open(io.BytesIO(image.data)) as opened:
        opened.load()
        return opened.copy()


# -- connecting ---------------------------------------------------------------------------

_CONNECT = """
import sys
{prelude}
from nostr_imagegen.errors import ConfigError
from nostr_imagegen.service.ray.cluster import start_or_connect
from nostr_imagegen.service.scaling import RaySection
try:
    start_or_connect(RaySection(address={address!r}))
except ConfigError as exc:
    print("ConfigError:", exc)
"""


def _connect_in_a_new_process(address: str | None, prelude: str = "") -> str:
    code = _CONNECT.format(prelude=prelude, address=address)
    env = {**os.environ, "PYTHONPATH": str(WORKTREE)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    return done.stdout


def test_an_address_where_nothing_listens_is_a_config_error_at_once(
    free_port_factory: Any,
) -> None:
    address = f"127.0.0.1:{free_port_factory()}"
    out = _connect_in_a_new_process(address)
    assert f"ConfigError: [engine.ray]: nothing answers at address '{address}'" in out


def test_without_ray_installed_the_error_names_the_extra() -> None:
    out = _connect_in_a_new_process(None, prelude="sys.modules['ray'] = None")
    assert "ConfigError:" in out
    assert "ray extra" in out


# -- through RaySlot ----------------------------------------------------------------------


def test_the_cluster_listens_on_loopback_only(ray_cluster: str, workers: list[RaySlot]) -> None:
    import psutil  # a dependency of Ray

    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    ours = {int(line.split()[0]) for line in _ray_processes(ray_cluster)}
    ours |= {int(line.split()[0]) for line in _ray_processes("ray::EngineWorker")}
    listening = {
        (conn.pid, conn.laddr.ip)
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.pid in ours
    }
    assert listening, "no Ray listener found"
    assert all(_loopback(ip) for _, ip in listening), listening


def _loopback(text: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(text)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


async def test_a_job_comes_back_as_encoded_images_with_progress(slots: list[RaySlot]) -> None:
    steps = Steps()
    [outcome] = await slots[0].run([task(make_job("a red square"), steps)])
    assert isinstance(outcome, list), outcome
    [image] = outcome
    assert image.mime == "image/png"
    picture = decoded(image)
    assert picture.size == (64, 64) == (image.width, image.height)
    assert steps.seen == [(1, 2), (2, 2)]
    assert "tiny" in slots[0].loaded_models()


async def test_two_jobs_alike_in_one_call_each_get_their_images_and_progress(
    slots: list[RaySlot],
) -> None:
    steps = [Steps(), Steps()]
    jobs = [make_job("first", (*SMALL, ("seed", "1"))), make_job("second", (*SMALL, ("seed", "2")))]
    outcomes = await slots[0].run([task(job, seen) for job, seen in zip(jobs, steps, strict=True)])
    assert all(isinstance(outcome, list) and len(outcome) == 1 for outcome in outcomes), outcomes
    first, second = (outcome[0] for outcome in outcomes if isinstance(outcome, list))
    assert first.sha256 != second.sha256  # each its own prompt and seed
    assert [seen.seen[-1] for seen in steps] == [(2, 2), (2, 2)]


async def test_jobs_that_cannot_share_a_call_run_one_by_one(slots: list[RaySlot]) -> None:
    # The front never groups these (their models differ); a worker sent them anyway runs
    # each alone rather than failing both.
    jobs = [
        make_job("sd", (*SMALL, ("model", "tiny"))),
        make_job("xl", (*SMALL, ("model", "tiny-xl"))),
    ]
    outcomes = await slots[1].run([task(job) for job in jobs])
    assert all(isinstance(outcome, list) and len(outcome) == 1 for outcome in outcomes), outcomes


async def test_a_job_the_engine_rejects_fails_alone(slots: list[RaySlot]) -> None:
    # Past the parser's checks (model_copy does not validate): the worker's plan refuses it.
    bad = make_job("too many steps").model_copy(update={"steps": 999})
    outcomes = await slots[1].run([task(bad), task(make_job("fine"))])
    assert isinstance(outcomes[0], JobRejected)
    assert "steps" in str(outcomes[0])
    assert isinstance(outcomes[1], list)


async def test_cancelling_a_running_job_stops_it_and_the_worker_goes_on(
    slots: list[RaySlot],
) -> None:
    slot = slots[0]
    steps = Steps()
    running = task(make_job("long", LONG), steps)
    pending = asyncio.create_task(slot.run([running]))
    assert await asyncio.to_thread(steps.first.wait, 30)
    running.active.cancel.set()
    [outcome] = await pending
    assert isinstance(outcome, JobCancelled)
    assert len(steps.seen) < 150
    [after] = await slot.run([task(make_job("next"))])
    assert isinstance(after, list)


async def test_cancelling_one_job_of_a_call_leaves_the_other(slots: list[RaySlot]) -> None:
    slot = slots[1]
    steps = Steps()
    doomed = task(make_job("doomed", LONG), steps)
    kept = task(make_job("kept"))
    pending = asyncio.create_task(slot.run([doomed, kept]))
    assert await asyncio.to_thread(steps.first.wait, 30)
    doomed.active.cancel.set()
    first, second = await pending
    assert isinstance(first, JobCancelled)
    assert isinstance(second, list)


async def test_a_worker_killed_mid_job_gives_unavailable_and_rejoins(
    slots: list[RaySlot],
) -> None:
    slot = slots[1]
    await slot.run([task(make_job("warm"))])
    assert slot.loaded_models() == {"tiny"}
    pid = await slot.pid()
    steps = Steps()
    pending = asyncio.create_task(slot.run([task(make_job("killed", LONG), steps)]))
    assert await asyncio.to_thread(steps.first.wait, 30)
    os.kill(pid, signal.SIGKILL)
    [outcome] = await pending
    assert isinstance(outcome, EngineUnavailable)
    assert not slot.available
    assert slot.loaded_models() == frozenset()  # a new process holds nothing
    [meanwhile] = await slot.run([task(make_job("while restarting"))])
    assert isinstance(meanwhile, EngineUnavailable)
    await wait_available(slot)
    assert await slot.pid() != pid
    [after] = await slot.run([task(make_job("after the restart"))])
    assert isinstance(after, list)
    assert (await slot.stats())["loads"] == 1


async def test_a_restarted_front_finds_its_workers_with_their_models(
    slots: list[RaySlot], engine_config: EngineConfig
) -> None:
    await slots[0].run([task(make_job("warm"))])
    pids = [await slot.pid() for slot in slots]
    section = RaySection(workers=2, num_gpus=0, num_cpus=1, max_restarts=3)
    # What a new front process does at start: the same names in the same namespace.
    found = await asyncio.to_thread(
        start_ray_workers, engine_config, section, EncodeSettings(), torch_threads=1
    )
    assert [await slot.pid() for slot in found] == pids
    assert found[0].loaded_models() == {"tiny"}  # routed to at once, no reload
    [outcome] = await found[0].run([task(make_job("through the found worker"))])
    assert isinstance(outcome, list)


# -- through a real relay and the runner --------------------------------------------------


def ray_dvm(relay_url: str, workdir: Path, config: EngineConfig, slots: list[RaySlot]) -> Dvm:
    from nostr_imagegen.engine.planner import Planner

    return Dvm([relay_url], workdir, Planner(config), slots=slots)


async def answers_for(relay_url: str, request_id: str) -> list[Any]:
    return await query_relay(relay_url, {"kinds": [6100], "#e": [request_id]})


async def test_a_mixed_model_burst_is_answered_once_each_with_affinity(
    relay_url: str, tmp_path: Path, engine_config: EngineConfig, slots: list[RaySlot]
) -> None:
    before = [await slot.stats() for slot in slots]
    async with (
        ray_dvm(relay_url, tmp_path, engine_config, slots),
        Customer([relay_url]) as customer,
    ):
        requests = [
            build_request(
                customer.keys,
                prompt=f"burst {i}",
                params=(*SMALL, ("model", MODELS[i % 2])),
            )
            for i in range(8)
        ]
        outcomes = await asyncio.gather(*(customer.submit(r, timeout_s=90) for r in requests))
        assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes]
    for request in requests:
        assert len(await answers_for(relay_url, request.id)) == 1
    after = [await slot.stats() for slot in slots]
    new_loads = sum(a["loads"] - b["loads"] for a, b in zip(after, before, strict=True))
    # Each worker holds one pipeline: routing by model keeps each model on one worker, where
    # first come, first served would reload on nearly every job.
    assert new_loads <= len(MODELS) + 1, (before, after)
    holders = sorted(model for s in after for model in s["loaded_models"])
    assert holders == sorted(MODELS), after


async def test_a_job_whose_worker_is_killed_is_still_answered_once(
    relay_url: str, tmp_path: Path, engine_config: EngineConfig, slots: list[RaySlot]
) -> None:
    async with (
        ray_dvm(relay_url, tmp_path, engine_config, slots) as dvm,
        Customer([relay_url]) as customer,
    ):
        request = build_request(customer.keys, prompt="survives a worker", params=LONG)
        waiting = asyncio.create_task(customer.submit(request, timeout_s=120))
        await dvm.wait_state(request.id, JobState.PROCESSING)
        victim = await _busy_worker(slots)
        os.kill(await victim.pid(), signal.SIGKILL)
        outcome = await waiting
        assert outcome.ok, outcome.error
        await dvm.wait_state(request.id, JobState.PUBLISHED)
        assert dvm.ledger is not None
        record = dvm.ledger.get(request.id)
        assert record is not None
        assert record.attempts == 2  # the first start, and the rerun on the other worker
        for slot in slots:  # the killed one rejoins (before the runner closes the views)
            await wait_available(slot)
    assert outcome.result is not None
    assert [e.id for e in await answers_for(relay_url, request.id)] == [outcome.result.id]


async def test_a_customer_cancels_a_job_running_on_a_worker(
    relay_url: str, tmp_path: Path, engine_config: EngineConfig, slots: list[RaySlot]
) -> None:
    async with (
        ray_dvm(relay_url, tmp_path, engine_config, slots) as dvm,
        Customer([relay_url]) as customer,
    ):
        request = build_request(customer.keys, prompt="never mind", params=LONG)
        waiting = asyncio.create_task(customer.submit(request, timeout_s=60))
        await dvm.wait_state(request.id, JobState.PROCESSING)
        await _busy_worker(slots)
        deletion = sign_event(
            UnsignedEvent(kind=5, tags=(("e", request.id), ("k", "5100")), content="stop"),
            customer.keys,
        )
        assert (await customer.pool.publish(deletion)).ok
        await dvm.wait_state(request.id, JobState.CANCELLED, timeout_s=30)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        # The worker stopped at a step, not after 150: it takes the next job at once.
        later = build_request(customer.keys, prompt="next", params=SMALL)
        assert (await customer.submit(later, timeout_s=60)).ok
    assert await answers_for(relay_url, request.id) == []


async def _busy_worker(slots: Sequence[RaySlot], timeout_s: float = 30.0) -> RaySlot:
    """The worker whose job has made its first step (the actor's own view)."""
    async with asyncio.timeout(timeout_s):
        while True:
            for slot in slots:
                with contextlib.suppress(Exception):
                    if (await slot.stats()).get("running"):
                        return slot
            await asyncio.sleep(0.05)


# -- `nostr-imagegen serve` on the cluster ------------------------------------------------


def _serve_config(folder: Path, model: str, relay: str, address: str) -> Path:
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
listen = "127.0.0.1:{_free_port()}"

[announce]
enabled = false

[engine]
backend = "ray"

[engine.ray]
address = "{address}"
workers = 1
num_gpus = 0
num_cpus = 0                 # the module's two workers hold the cluster's two CPUs
namespace = "serve-test"
"""
    )
    return path


def _free_port() -> int:
    from nostr_imagegen.service.localrelay import free_port

    return free_port()


async def test_serve_with_the_ray_backend_answers_and_ends_its_worker_on_stop(
    relay_url: str, tmp_path: Path, engine_config: EngineConfig, workers: list[RaySlot]
) -> None:
    """What an operator runs: `serve` with `[engine] backend = "ray"` and the address of a
    running cluster (this module's, on 127.0.0.1): its worker actor answers a customer over a
    real relay, and a clean stop (SIGTERM) ends that actor, not the cluster's other ones."""
    address = ray.get_runtime_context().gcs_address
    config = _serve_config(tmp_path, str(engine_config.models["tiny"].source), relay_url, address)
    provider = Keys.generate()
    env = {**os.environ, "NOSTR_IMAGEGEN_NSEC": provider.nsec(), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "nostr_imagegen.cli", "serve", "--config", str(config)]
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as err:
        process = subprocess.Popen(command, env=env, stderr=err, stdout=subprocess.DEVNULL)
    try:
        async with Customer([relay_url]) as customer:
            request = build_request(customer.keys, prompt="served by a Ray worker", params=SMALL)
            outcome = await customer.submit(request, provider=provider.public_key, timeout_s=120)
        assert outcome.ok, (outcome.error, stderr.read_text()[-3000:])
        served_by = ray.get_actor("nostr-imagegen-worker-0", namespace="serve-test")
        assert (await served_by.stats.remote())["jobs_run"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0, stderr.read_text()[-3000:]
    with pytest.raises(ValueError, match="Failed to look up actor"):
        ray.get_actor("nostr-imagegen-worker-0", namespace="serve-test")
    assert [await slot.actor.ping.remote() for slot in workers]  # the others serve on
