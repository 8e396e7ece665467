"""LocalSlot: an in-process engine as a slot. Fake engines for the batching paths, one real
tiny Engine for the solo path (its images are the ones ``Engine.generate`` gives)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _runner_fakes import FakeEngine, FakeResult, make_request
from PIL import Image

from nostr_imagegen.errors import EngineError, JobCancelled, JobRejected, NostrImagegenError
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.imagejob.request import parse_image_job
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.jobqueue import ActiveJob
from nostr_imagegen.service.localslot import LocalSlot
from nostr_imagegen.service.slots import EncodeSettings, EngineTask

CUSTOMER = Keys.generate()


def task(*params: tuple[str, ...], prompt: str = "a red kite") -> EngineTask:
    job = parse_image_job(make_request(CUSTOMER, *params, prompt=prompt))
    return EngineTask(ActiveJob(job=job, relay=None, reply_relays=()))


@dataclass
class Batcher:
    """Answers a batch with an image per job, except the outcomes named in ``errors``."""

    errors: dict[int, NostrImagegenError] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)

    def generate_batch(self, requests: Sequence[Any]) -> list[Any]:
        self.threads.add(threading.current_thread().name)
        self.calls.append([r.job.id for r in requests])
        return [
            self.errors.get(i, FakeResult((Image.new("RGB", (8, 8), (i, 0, 0)),), i, "m"))
            for i, _ in enumerate(requests)
        ]

    def generate(self, job: ImageJob, **_: Any) -> FakeResult:
        self.threads.add(threading.current_thread().name)
        self.calls.append([job.id])
        return FakeResult((Image.new("RGB", (8, 8), (9, 9, 9)),), 1, "m")

    def loaded_models(self) -> frozenset[str]:
        return frozenset({"m"})

    def max_batch(self, model: str) -> int:
        return 4 if model == "m" else 1

    def plan(self, job: ImageJob) -> None:
        return None

    def offered(self) -> Any:
        return FakeEngine().offered()


async def test_several_tasks_share_one_batch_call_each_with_its_outcome() -> None:
    engine = Batcher(errors={1: JobCancelled("cancelled"), 2: JobRejected("no such thing")})
    slot = LocalSlot(engine, name="gpu-0", encode=EncodeSettings())
    tasks = [task(prompt=f"p{i}") for i in range(4)]
    outcomes = await slot.run(tasks)
    assert engine.calls == [[t.active.job.id for t in tasks]]
    assert engine.threads == {n for n in engine.threads if n.startswith("gpu-0")}
    assert isinstance(outcomes[1], JobCancelled)
    assert isinstance(outcomes[2], JobRejected)
    images = [o for o in (outcomes[0], outcomes[3]) if isinstance(o, list)]
    assert len(images) == 2
    assert images[0][0].sha256 != images[1][0].sha256
    assert slot.loaded_models() == {"m"}
    assert (slot.max_batch("m"), slot.max_batch("other")) == (4, 1)
    await slot.close()


async def test_a_failed_batch_call_ends_every_job_of_it() -> None:
    class Broken(Batcher):
        def generate_batch(self, requests: Sequence[Any]) -> list[Any]:
            raise RuntimeError("CUDA error: an illegal memory access")

    slot = LocalSlot(Broken(), name="gpu-0", encode=EncodeSettings())
    outcomes = await slot.run([task(), task(prompt="other")])
    assert all(isinstance(o, EngineError) for o in outcomes)
    assert "illegal memory access" in str(outcomes[0])
    await slot.close()


async def test_an_engine_without_batching_runs_the_tasks_one_by_one() -> None:
    engine = FakeEngine(fail_with=None)
    slot = LocalSlot(engine, name="e", encode=EncodeSettings())
    tasks = [task(prompt="one"), task(prompt="two")]
    cancelled = task(prompt="three")
    cancelled.active.cancel.set()
    outcomes = await slot.run([*tasks, cancelled])
    assert engine.calls == [t.active.job.id for t in tasks]  # the cancelled one never ran
    assert all(isinstance(o, list) for o in outcomes[:2])
    assert isinstance(outcomes[2], JobCancelled)
    assert slot.loaded_models() == frozenset()
    assert slot.max_batch("anything") == 1
    await slot.close()


async def test_one_job_failing_does_not_lose_the_others_images() -> None:
    class Flaky(FakeEngine):
        def generate(self, job: ImageJob, **kwargs: Any) -> FakeResult:
            if "boom" in job.prompt:
                raise ValueError("a bug")
            return super().generate(job, **kwargs)

    slot = LocalSlot(Flaky(), name="e", encode=EncodeSettings())
    outcomes = await slot.run([task(prompt="boom"), task(prompt="fine")])
    assert isinstance(outcomes[0], EngineError)
    assert isinstance(outcomes[1], list)
    await slot.close()


@pytest.mark.engine
async def test_a_real_engine_gives_through_the_slot_the_images_it_gives_alone(
    tmp_path: Path,
) -> None:
    import torch

    from nostr_imagegen.engine.generate import Engine
    from nostr_imagegen.engine_config import load_engine_config
    from nostr_imagegen.testing import build_tiny_pipeline, write_tiny_config

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = build_tiny_pipeline(tmp_path / "tiny")
        config = load_engine_config(write_tiny_config(tmp_path / "e.toml", {"tiny": folder}))
        engine = Engine(config)
        slot = LocalSlot(engine, name="cpu", encode=EncodeSettings(default_output="png"))
        job = task(("size", "64x64"), ("seed", "7"))
        steps: list[tuple[int, int]] = []
        job.progress = lambda step, total: steps.append((step, total))
        (outcome,) = await slot.run([job])
        alone = EncodeSettings(default_output="png").encode(
            job.active.job, engine.generate(job.active.job)
        )
        assert isinstance(outcome, list)
        assert [image.sha256 for image in outcome] == [image.sha256 for image in alone]
        assert (outcome[0].width, outcome[0].height) == (64, 64)
        assert steps
        await slot.close()
    finally:
        torch.set_num_threads(before)
