"""What the runner is given: the interfaces an embedding program (or a test) may fill in.

Each one names the class the service uses by default, so an object with the same methods
works in its place: a fake pool in the tests, an in-memory pool in
``examples/embed_runner.py``, a second engine for a second GPU.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from PIL import Image

from nostr_imagegen.imagejob.model import ImageJob, Ratio
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.nostr.messages import Filter

__all__ = [
    "ClientPoolLike",
    "EngineLike",
    "EngineTimeHook",
    "FeedbackHook",
    "Fetcher",
    "GenerationLike",
    "NamedOffer",
    "OfferLike",
    "PaymentCheck",
    "PlannerLike",
    "PricingPolicy",
    "PublishOutcome",
    "RelayPoolLike",
    "ResultHook",
]


class GenerationLike(Protocol):
    """What ``EngineLike.generate`` returns (``engine.generate.GenerationResult``)."""

    @property
    def images(self) -> Sequence[Image.Image]: ...
    @property
    def seed(self) -> int: ...
    @property
    def model(self) -> str: ...


class NamedOffer(Protocol):
    """One offered model or LoRA (``engine.generate.OfferedModel`` / ``OfferedLora``)."""

    @property
    def name(self) -> str:
        """The name a request asks for it by (``["param", "model", name]``)."""
        ...


class OfferLike(Protocol):
    """What ``EngineLike.offered`` returns (``engine.generate.EngineOffer``): the models,
    LoRAs and ratios the NIP-89 announcement lists in its ``nip90Params``."""

    @property
    def models(self) -> Sequence[NamedOffer]:
        """The offered models, the default first."""
        ...

    @property
    def loras(self) -> Sequence[NamedOffer]: ...
    @property
    def ratios(self) -> Sequence[Ratio]: ...


class PlannerLike(Protocol):
    """What the runner's front needs to accept jobs (``engine.planner.Planner``, or an
    ``Engine``): when the engines themselves are elsewhere (``JobRunner(slots=...)``).

    ``plan`` checks a job before anything is queued, paid for or loaded, and raises
    ``JobRejected`` with a reason for the customer; the scheduler routes and batches by the
    plan's ``model`` and ``batch_key`` when it has them. ``offered`` feeds the announcement.
    """

    def plan(self, job: ImageJob) -> object: ...

    def offered(self) -> OfferLike: ...


class EngineLike(PlannerLike, Protocol):
    """The image engine (``engine.generate.Engine``): a ``PlannerLike`` that also generates.

    ``generate`` runs in a worker thread (``service.localslot.LocalSlot``).
    """

    def generate(
        self,
        job: ImageJob,
        *,
        init_image: Image.Image | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationLike: ...


class PublishOutcome(Protocol):
    """What ``RelayPoolLike.publish`` returns (``service.relay.PublishResult``)."""

    @property
    def ok(self) -> bool:
        """Whether at least one relay accepted the event."""
        ...


class RelayPoolLike(Protocol):
    """The relay pool (``service.relay.RelayPool``), started.

    ``subscribe`` keeps the subscription across reconnects; it is a coroutine, so a pool built
    on a client library whose subscribing waits (nostr-sdk's ``Client.subscribe``) fits as it
    is, and one that only records the filters simply returns. ``publish`` sends to every pool
    relay plus ``relays`` (a request's ``relays`` tag); ``events`` yields each event id once,
    whichever relays carry it.
    """

    async def subscribe(
        self, subscription_id: str, filters: Sequence[Filter], *, lookback_s: int | None = ...
    ) -> None: ...

    async def publish(
        self, event: Event, *, relays: Sequence[str] | None = ..., timeout_s: float = ...
    ) -> PublishOutcome: ...

    def events(self) -> AsyncIterator[tuple[str, Event]]: ...


class ClientPoolLike(RelayPoolLike, Protocol):
    """What ``service.client.JobClient`` needs of a pool: a ``RelayPoolLike`` that can also
    end a subscription (``unsubscribe``, a coroutine like ``subscribe``)."""

    async def unsubscribe(self, subscription_id: str) -> None: ...


class PricingPolicy(Protocol):
    """Operator hook: the price of a job in millisats, or ``None`` (or 0) for free."""

    def __call__(self, job: ImageJob) -> int | None: ...


class PaymentCheck(Protocol):
    """Operator hook deciding when a priced job may proceed.

    ``invoice`` returns a bolt11 invoice for the ``payment-required`` feedback (or ``None``
    to ask for a zap); ``wait_paid`` returns once paid (``True``) or refused (``False``).
    The runner gives up after ``RunnerOptions.payment_timeout_s`` and answers `error`.
    """

    async def invoice(self, job: ImageJob, amount_msats: int) -> str | None: ...

    async def wait_paid(self, job: ImageJob, amount_msats: int, bolt11: str | None) -> bool: ...


#: ``await fetcher(url)`` -> the input image; raises ``FetchError``. Default: ``fetch_image``
#: with the runner's fetch policy.
Fetcher = Callable[[str], Awaitable[Image.Image]]

#: ``on_result(job, result_event)`` after a result was accepted by a relay; may be async.
ResultHook = Callable[[ImageJob, Event], Any]
#: ``on_feedback(event)`` for every feedback event the runner publishes; may be async.
FeedbackHook = Callable[[Event], Any]
#: ``on_engine_time(job, seconds)`` after the engine generated a job's images (metrics).
EngineTimeHook = Callable[[ImageJob, float], Any]
