"""The customer side: build a kind 5100 request, publish it, follow feedback to the result.

    >>> request = build_request(customer, prompt="A purple ostrich watching the sunset",
    ...                         params=[("ratio", "4:3")], provider=dvm_pubkey,
    ...                         encryption=EncryptionScheme.NIP44)
    >>> async with RelayPool(["wss://relay.example"], keys=customer) as pool:
    ...     outcome = await submit_job(pool, request, keys=customer, timeout_s=120,
    ...                                on_feedback=print)
    >>> outcome.urls          # ('https://cdn.example/ab12.png',)

The wire form of the request (clear)::

    {"kind": 5100, "content": "", "tags": [["i", "A purple ostrich...", "text"],
        ["param", "ratio", "4:3"], ["p", "<provider>"], ["relays", "wss://..."]]}

Encrypted (NIP-90 "Encrypted Params"): the ``i`` and ``param`` tags move, as a JSON array,
into ``content`` encrypted to the provider (NIP-44 v2 unless NIP-04 is asked for); the
clear tags keep ``p``, ``encrypted`` and the routing ones (``relays``, ``output``, ``bid``).

``JobClient`` subscribes once to the answers addressed to the customer (``#p``, kinds result
and 7000) *before* publishing, so a fast provider's answer is not missed, and routes them by
their ``e`` tag to the jobs in flight; each ``submit`` returns on the first result, on an
`error` feedback (unless ``stop_on_error=False``), or at the timeout. ``submit_job`` is the
one-job shortcut.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nostr_imagegen.errors import NostrImagegenError, RelayError
from nostr_imagegen.imagejob.results import (
    JobStatus,
    ParsedFeedback,
    ParsedResult,
    parse_feedback,
    parse_result,
)
from nostr_imagegen.nostr.encryption import EncryptionScheme, encrypt
from nostr_imagegen.nostr.event import Event, Tag, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import normalize_public_key
from nostr_imagegen.nostr.kinds import FEEDBACK_KIND, IMAGE_GENERATION_KIND
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.nostr.signer import Signer
from nostr_imagegen.service.seams import ClientPoolLike

__all__ = ["JobClient", "JobOutcome", "Payer", "build_request", "submit_job"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    """How a submitted job ended.

    ``result`` is set on success; ``error`` holds the provider's reason (or "timed out ...")
    otherwise. ``feedback`` is every feedback event seen, oldest first.
    """

    request: Event
    result: Event | None = None
    parsed: ParsedResult | None = None
    error: str | None = None
    feedback: tuple[tuple[Event, ParsedFeedback], ...] = field(default=())
    elapsed_s: float = 0.0
    #: True when nothing final (result or `error`) arrived before the timeout.
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def urls(self) -> tuple[str, ...]:
        return self.parsed.urls if self.parsed is not None else ()


def build_request(
    keys: Signer,
    *,
    prompt: str,
    image_url: str | None = None,
    params: Sequence[tuple[str, ...]] = (),
    provider: str | None = None,
    encryption: EncryptionScheme | None = None,
    relays: Sequence[str] = (),
    output: str | None = None,
    bid_msats: int | None = None,
    kind: int = IMAGE_GENERATION_KIND,
    created_at: int | None = None,
) -> Event:
    """A signed job request. ``params`` are ``(key, value, ...)`` tuples (``("ratio", "4:3")``).

    ``provider`` (hex or npub) adds a ``p`` tag; ``encryption`` needs it and puts the inputs
    and params into encrypted ``content``. Raises ``NostrImagegenError`` for bad keys.
    """
    private: list[Tag] = [("i", prompt, "text")]
    if image_url is not None:
        private.append(("i", image_url, "url"))
    private.extend(("param", *param) for param in params)
    public: list[Tag] = []
    provider_hex = normalize_public_key(provider) if provider is not None else None
    if provider_hex is not None:
        public.append(("p", provider_hex))
    if output is not None:
        public.append(("output", output))
    if bid_msats is not None:
        public.append(("bid", str(bid_msats)))
    if relays:
        public.append(("relays", *relays))
    content = ""
    if encryption is not None:
        if provider_hex is None:
            raise NostrImagegenError("an encrypted request needs the provider's public key")
        payload = json.dumps([list(tag) for tag in private], separators=(",", ":"))
        content = encrypt(payload, keys, provider_hex, encryption)
        tags = [*public, ("encrypted",)]
    else:
        tags = [*private, *public]
    template = UnsignedEvent(kind=kind, tags=tuple(tags), content=content)
    return sign_event(template, keys, created_at=created_at)


FeedbackCallback = Callable[[Event, ParsedFeedback], Any]
#: ``await payer(bolt11, max_msats)`` pays an invoice (``service.payment.lnbits.LnbitsPayer``
#: or any wallet); it should refuse one above ``max_msats``. Raising fails the job.
Payer = Callable[[str, int | None], Awaitable[Any]]


@dataclass
class _Pending:
    request: Event
    provider: str | None
    on_feedback: FeedbackCallback | None
    stop_on_error: bool
    started: float
    done: asyncio.Future[JobOutcome]
    payer: Payer | None = None
    max_msats: int | None = None
    #: Invoices already paid (a provider repeating its `payment-required` is paid once).
    paid: set[str] = field(default_factory=set)
    feedback: list[tuple[Event, ParsedFeedback]] = field(default_factory=list)


class JobClient:
    """Submit jobs through a started relay pool and follow their answers, many at a time.

    One subscription (results and feedback tagged with our key, ``#p``) and one reader task
    serve every job in flight; ``submit`` returns a ``JobOutcome`` per job. Use as an async
    context manager (it reads ``pool.events()``: do not read them elsewhere meanwhile).
    ``pool`` is a ``RelayPool`` or anything with its ``subscribe``, ``unsubscribe``,
    ``publish`` and ``events`` (``service.seams.ClientPoolLike``).
    """

    def __init__(
        self,
        pool: ClientPoolLike,
        keys: Signer,
        *,
        kinds: Sequence[int] = (IMAGE_GENERATION_KIND,),
        subscription_id: str = "customer-answers",
        lookback_s: int = 30,
    ) -> None:
        self.pool = pool
        self.keys = keys
        self._kinds = tuple(kinds)
        self._sub_id = subscription_id
        self._lookback_s = lookback_s
        self._pending: dict[str, _Pending] = {}
        self._reader: asyncio.Task[None] | None = None
        self._payments: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> JobClient:
        answers = Filter(
            kinds=[*(kind + 1000 for kind in self._kinds), FEEDBACK_KIND],
            tags={"p": [self.keys.public_key]},
            since=max(0, int(time.time()) - self._lookback_s),
        )
        await self.pool.subscribe(self._sub_id, [answers])
        self._reader = asyncio.create_task(self._read(), name="job-client")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        for task in self._payments:
            task.cancel()
        await asyncio.gather(*self._payments, return_exceptions=True)
        for pending in self._pending.values():
            if not pending.done.done():
                pending.done.cancel()
        await self.pool.unsubscribe(self._sub_id)

    async def submit(
        self,
        request: Event,
        *,
        timeout_s: float = 120.0,
        provider: str | None = None,
        on_feedback: FeedbackCallback | None = None,
        stop_on_error: bool = True,
        publish_timeout_s: float = 10.0,
        payer: Payer | None = None,
        max_msats: int | None = None,
    ) -> JobOutcome:
        """Publish ``request`` and wait for its result, an `error` (unless ``stop_on_error``
        is False) or the timeout. Only answers from ``provider`` count when one is given.

        With a ``payer``, a `payment-required` feedback carrying an invoice is paid (each
        invoice once) unless its amount is above ``max_msats``: then the job ends with an
        error saying so, unpaid. Raises ``RelayError`` when no relay accepted the request."""
        if self._reader is None:
            raise RelayError("use the JobClient as `async with JobClient(...)`")
        started = time.monotonic()
        pending = _Pending(
            request=request,
            provider=normalize_public_key(provider) if provider is not None else None,
            on_feedback=on_feedback,
            stop_on_error=stop_on_error,
            started=started,
            done=asyncio.get_running_loop().create_future(),
            payer=payer,
            max_msats=max_msats,
        )
        # Registered before publishing: an answer may arrive before the relay's OK does.
        self._pending[request.id] = pending
        try:
            published = await self.pool.publish(request, timeout_s=publish_timeout_s)
            if not getattr(published, "ok", bool(published)):
                raise RelayError(f"no relay accepted the request {request.id}")
            remaining = max(0.0, timeout_s - (time.monotonic() - started))
            try:
                return await asyncio.wait_for(asyncio.shield(pending.done), remaining)
            except TimeoutError:
                errors = [
                    p.message
                    for _, p in pending.feedback
                    if p.status is JobStatus.ERROR and p.message
                ]
                reason = f"timed out after {timeout_s:g} s without a result"
                if errors:
                    reason += f" (last error: {errors[-1]})"
                return JobOutcome(
                    request,
                    error=reason,
                    feedback=tuple(pending.feedback),
                    elapsed_s=time.monotonic() - started,
                    timed_out=True,
                )
        finally:
            self._pending.pop(request.id, None)

    async def _read(self) -> None:
        async for _relay, event in self.pool.events():
            try:
                await self._dispatch(event)
            except Exception:
                logger.exception("cannot handle answer %s", event.id)

    async def _dispatch(self, event: Event) -> None:
        request_id = event.tag_value("e")
        if request_id is None:
            return
        pending = self._pending.get(request_id)
        if pending is None:
            return  # not a job in flight (an old one, or someone else's noise)
        if pending.done.done():
            return
        if pending.provider is not None and event.pubkey != pending.provider:
            return
        elapsed = time.monotonic() - pending.started
        if event.kind == FEEDBACK_KIND:
            try:
                parsed_feedback = parse_feedback(event, keys=self.keys)
            except NostrImagegenError as exc:
                logger.info("unreadable feedback %s: %s", event.id, exc)
                return
            pending.feedback.append((event, parsed_feedback))
            if pending.on_feedback is not None:
                value = pending.on_feedback(event, parsed_feedback)
                if inspect.isawaitable(value):
                    await value
            if parsed_feedback.status is JobStatus.PAYMENT_REQUIRED:
                # In its own task: the reader keeps routing answers while the wallet pays.
                self._payments.add(
                    asyncio.create_task(_pay_invoice(pending, parsed_feedback, elapsed))
                )
            if parsed_feedback.status is JobStatus.ERROR and pending.stop_on_error:
                pending.done.set_result(
                    JobOutcome(
                        pending.request,
                        error=parsed_feedback.message or "the provider gave no reason",
                        feedback=tuple(pending.feedback),
                        elapsed_s=elapsed,
                    )
                )
        elif event.kind == pending.request.kind + 1000:
            try:
                parsed = parse_result(event, keys=self.keys)
            except NostrImagegenError as exc:
                logger.info("unreadable result %s: %s", event.id, exc)
                return
            pending.done.set_result(
                JobOutcome(
                    pending.request,
                    result=event,
                    parsed=parsed,
                    feedback=tuple(pending.feedback),
                    elapsed_s=elapsed,
                )
            )


async def _pay_invoice(pending: _Pending, feedback: ParsedFeedback, elapsed: float) -> None:
    """Pay a `payment-required` invoice within the budget, or end the job saying why not."""
    if pending.payer is None or feedback.bolt11 is None or pending.done.done():
        return
    if feedback.bolt11 in pending.paid:
        return
    amount = feedback.amount_msats
    reason: str | None = None
    if pending.max_msats is not None and (amount is None or amount > pending.max_msats):
        reason = f"the provider asks {amount} msats, more than the {pending.max_msats} allowed"
    else:
        pending.paid.add(feedback.bolt11)
        try:
            await pending.payer(feedback.bolt11, pending.max_msats)
        except NostrImagegenError as exc:
            reason = f"the payment failed: {exc}"
    if reason is not None and not pending.done.done():
        pending.done.set_result(
            JobOutcome(
                pending.request, error=reason, feedback=tuple(pending.feedback), elapsed_s=elapsed
            )
        )


async def submit_job(
    pool: ClientPoolLike,
    request: Event,
    *,
    keys: Signer,
    timeout_s: float = 120.0,
    provider: str | None = None,
    on_feedback: FeedbackCallback | None = None,
    stop_on_error: bool = True,
    publish_timeout_s: float = 10.0,
    payer: Payer | None = None,
    max_msats: int | None = None,
) -> JobOutcome:
    """Publish one ``request`` through ``pool`` (a started ``RelayPool``) and wait for its
    answer: ``JobClient`` for a single job. Raises ``RelayError`` if no relay took it."""
    async with JobClient(pool, keys, kinds=(request.kind,)) as client:
        return await client.submit(
            request,
            timeout_s=timeout_s,
            provider=provider,
            on_feedback=on_feedback,
            stop_on_error=stop_on_error,
            publish_timeout_s=publish_timeout_s,
            payer=payer,
            max_msats=max_msats,
        )
