"""Fakes for driving ``JobRunner`` without sockets or torch: a pool, an engine, image hosts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from nostr_imagegen.errors import EngineError, JobCancelled, JobRejected, UploadError
from nostr_imagegen.imagejob.model import ImageJob, Ratio
from nostr_imagegen.imagejob.results import JobStatus, parse_feedback, parse_result
from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.service.upload import UploadedImage

PROMPT = "A purple ostrich watching the sunset"


@dataclass(frozen=True)
class FakePublish:
    ok: bool


class FakePool:
    """Records subscriptions and publishes; ``deliver`` feeds events to ``events()``."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, tuple[Filter, ...]] = {}
        self.published: list[tuple[Event, tuple[str, ...] | None]] = []
        self.accept: Callable[[Event], bool] = lambda event: True
        self._queue: asyncio.Queue[tuple[str, Event]] = asyncio.Queue()
        self.changed = asyncio.Event()

    async def subscribe(
        self, subscription_id: str, filters: Sequence[Filter], *, lookback_s: int | None = None
    ) -> None:
        self.subscriptions[subscription_id] = tuple(filters)

    async def publish(
        self, event: Event, *, relays: Sequence[str] | None = None, timeout_s: float = 10.0
    ) -> FakePublish:
        self.published.append((event, tuple(relays) if relays is not None else None))
        self.changed.set()
        return FakePublish(ok=self.accept(event))

    async def events(self) -> AsyncIterator[tuple[str, Event]]:
        while True:
            yield await self._queue.get()

    def deliver(self, event: Event, relay: str = "ws://relay.test") -> None:
        self._queue.put_nowait((relay, event))

    # -- reading what was published ------------------------------------------------------

    def events_of(self, kind: int, request_id: str | None = None) -> list[Event]:
        found = []
        for event, _ in self.published:
            if event.kind != kind:
                continue
            if request_id is not None and event.tag_value("e") != request_id:
                continue
            found.append(event)
        return found

    def results(self, request_id: str | None = None) -> list[Event]:
        return self.events_of(6100, request_id)

    def statuses(self, request_id: str, keys: Keys | None = None) -> list[tuple[str, str | None]]:
        out = []
        for event in self.events_of(7000, request_id):
            parsed = parse_feedback(event, keys=keys)
            out.append((parsed.raw_status, parsed.message))
        return out

    async def wait_for(
        self, predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition"
    ) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.05)


@dataclass
class FakeResult:
    images: tuple[Image.Image, ...]
    seed: int
    model: str


@dataclass(frozen=True)
class FakeOffered:
    """An offered model or LoRA: what the announcement reads of it is its name."""

    name: str


@dataclass(frozen=True)
class FakeOffer:
    models: tuple[FakeOffered, ...]
    loras: tuple[FakeOffered, ...]
    ratios: tuple[Ratio, ...]


@dataclass
class FakeEngine:
    """Generates a small solid image. ``gate`` (if set) holds each job until it is set;
    ``fail_with`` raises; ``steps`` progress calls are made, checking ``cancel`` each time.
    ``plan`` refuses the models named in ``refuse_models``, as ``Engine.plan`` refuses a model
    it does not offer."""

    gate: threading.Event | None = None
    fail_with: Exception | None = None
    refuse_models: frozenset[str] = frozenset()
    planned: list[str] = field(default_factory=list)
    steps: int = 4
    calls: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    ignore_cancel: bool = False

    def plan(self, job: ImageJob) -> None:
        self.planned.append(job.id)
        if job.model is not None and job.model in self.refuse_models:
            tag = ("param", "model", job.model)
            raise JobRejected(f"model {job.model!r} is not offered here", tag=tag)

    def generate(
        self,
        job: ImageJob,
        *,
        init_image: Image.Image | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> FakeResult:
        self.calls.append(job.id)
        self.started.set()
        if self.gate is not None:
            while not self.gate.wait(0.01):
                if cancel is not None and cancel.is_set() and not self.ignore_cancel:
                    raise JobCancelled("cancelled while waiting")
        if self.fail_with is not None:
            raise self.fail_with
        for step in range(1, self.steps + 1):
            if cancel is not None and cancel.is_set() and not self.ignore_cancel:
                raise JobCancelled("cancelled")
            if progress is not None:
                progress(step, self.steps)
        size = (16, 12) if init_image is None else init_image.size
        color = (len(self.calls) * 40 % 256, 80, 160)
        return FakeResult((Image.new("RGB", size, color),), seed=7, model="fake")

    def offered(self) -> FakeOffer:
        return FakeOffer(
            models=(FakeOffered("fake"), FakeOffered("fake-xl")),
            loras=(FakeOffered("noise"),),
            ratios=(Ratio.SQUARE, Ratio.LANDSCAPE_4_3),
        )


class FakeHost:
    name = "fake host"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.stored: dict[str, bytes] = {}

    async def upload(self, data: bytes, *, mime: str, sha256: str) -> UploadedImage:
        if self.fail:
            raise UploadError("fake host is down")
        assert hashlib.sha256(data).hexdigest() == sha256
        self.stored[sha256] = data
        return UploadedImage(
            url=f"https://img.test/{sha256}.png",
            sha256=sha256,
            size=len(data),
            mime=mime,
            host=self.name,
        )


def make_request(
    customer: Keys,
    *params: tuple[str, ...],
    prompt: str = PROMPT,
    extra_tags: Sequence[tuple[str, ...]] = (),
    kind: int = 5100,
    content: str = "",
) -> Event:
    tags: list[tuple[str, ...]] = [("i", prompt, "text")]
    tags.extend(("param", *param) for param in params)
    tags.extend(extra_tags)
    return sign_event(UnsignedEvent(kind=kind, tags=tuple(tags), content=content), customer)


def deletion(customer: Keys, *request_ids: str) -> Event:
    tags = (*tuple(("e", request_id) for request_id in request_ids), ("k", "5100"))
    return sign_event(UnsignedEvent(kind=5, tags=tags, content="never mind"), customer)


def result_urls(event: Event, keys: Keys | None = None) -> tuple[str, ...]:
    return parse_result(event, keys=keys).urls


__all__ = [
    "PROMPT",
    "EngineError",
    "FakeEngine",
    "FakeHost",
    "FakePool",
    "JobStatus",
    "deletion",
    "make_request",
    "result_urls",
]
