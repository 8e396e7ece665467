"""Assemble a running DVM from a ``ServiceConfig``: ledger, image hosts, relay pool, engines,
runner. What ``nostr-imagegen serve`` runs; embedders who want other pieces build a
``JobRunner`` themselves (see ``examples/embed_runner.py``).

    >>> config = load_service_config("dvm.toml")
    >>> await serve(config, keys=load_keys(config.identity), stop=stop_event)

The engines come from ``[engine]`` (``service.scaling``): ``backend = "local"`` runs one
``Engine`` per entry of ``devices`` (or one on ``device``) in this process, each in a slot of
its own; ``backend = "ray"`` runs them in Ray actors (``service.ray``) while this process
plans jobs with a ``Planner`` and keeps relays, ledger and payments. Either way the
scheduler hands jobs to them by ``[engine]``'s rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any

from nostr_imagegen.errors import ConfigError
from nostr_imagegen.nostr.signer import Signer
from nostr_imagegen.service.config import (
    BlossomStorage,
    LocalStorage,
    Nip96Storage,
    ServiceConfig,
    StorageConfig,
)
from nostr_imagegen.service.ledger import Ledger
from nostr_imagegen.service.options import Announcement, RunnerOptions
from nostr_imagegen.service.payment.pricing import price_tags
from nostr_imagegen.service.payment.setup import payment_pieces
from nostr_imagegen.service.runner import JobRunner, encode_settings
from nostr_imagegen.service.seams import EngineLike, PlannerLike
from nostr_imagegen.service.slots import EngineSlot

__all__ = ["build_hosts", "runner_options", "serve"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def build_hosts(storage: Sequence[StorageConfig], keys: Signer) -> Iterator[list[Any]]:
    """The image hosts of ``[[storage]]``, in order; local folders with ``listen`` are served
    by the built-in file server for as long as the context lasts."""
    from nostr_imagegen.service.upload import (
        BlossomHost,
        LocalFolderHost,
        Nip96Host,
        serve_folder,
    )

    hosts: list[Any] = []
    with ExitStack() as stack:
        for item in storage:
            if isinstance(item, BlossomStorage):
                hosts.append(
                    BlossomHost(item.servers, keys, mirror=item.mirror, timeout_s=item.timeout_s)
                )
            elif isinstance(item, Nip96Storage):
                hosts.append(Nip96Host(item.url, keys, timeout_s=item.timeout_s))
            elif isinstance(item, LocalStorage):
                item.folder.mkdir(parents=True, exist_ok=True)
                base_url = item.base_url
                address = item.listen_address()
                if address is not None:
                    server = stack.enter_context(serve_folder(item.folder, *address))
                    base_url = base_url or server.url
                    logger.info("serving %s at %s", item.folder, server.url)
                if base_url is None:
                    raise ConfigError(
                        f"storage folder {item.folder} needs base_url or listen (or both)"
                    )
                hosts.append(LocalFolderHost(item.folder, base_url))
        yield hosts


def runner_options(config: ServiceConfig) -> RunnerOptions:
    """The runner's knobs from ``[service]`` and the engine's ``[output]``."""
    service = config.service
    return RunnerOptions(
        lookback_s=service.lookback_s,
        progress_interval_s=service.progress_interval_s,
        payment_timeout_s=service.payment_timeout_s,
        shutdown_timeout_s=service.shutdown_timeout_s,
        publish_timeout_s=service.publish_timeout_s,
        max_reply_relays=service.max_reply_relays,
        allow_private_relays=service.allow_private_relays,
        feedback_expiration_s=service.feedback_expiration_s,
        result_expiration_s=service.result_expiration_s,
        max_attempts=service.max_attempts,
        resume_max_age_s=service.resume_max_age_s,
        default_output=f"image/{config.output.default_format}",
        embed_metadata=config.output.embed_metadata,
        quality=config.output.quality,
    )


async def serve(
    config: ServiceConfig,
    *,
    keys: Signer,
    stop: asyncio.Event,
    engine: EngineLike | None = None,
    on_ready: Callable[[JobRunner], Any] | None = None,
    **runner_kwargs: Any,
) -> JobRunner:
    """Run the DVM until ``stop`` is set, then shut down gracefully; returns the runner
    (for its ``stats``). ``engine`` replaces the configured ones (tests, custom engines: one
    local engine, whatever ``[engine]`` says); ``runner_kwargs`` go to ``JobRunner``
    (``pricing``, ``payment_check``, hooks...)."""
    planner, engines, slots = await _engines(config, engine)
    try:
        return await _serve(config, keys, stop, planner, engines, slots, on_ready, runner_kwargs)
    finally:
        for slot in slots:
            await slot.close()


async def _engines(
    config: ServiceConfig, engine: EngineLike | None
) -> tuple[PlannerLike, list[EngineLike], list[EngineSlot]]:
    """What plans jobs, the local engines (the runner runs each in a slot), and the remote
    slots (``backend = "ray"``), as ``[engine]`` says."""
    if engine is not None:
        engines = [engine]
    elif config.engine.backend == "ray":
        try:
            from nostr_imagegen.service.ray import build_ray_slots
        except ImportError as exc:
            raise ConfigError(
                f'[engine] backend = "ray" needs Ray (the "ray" extra): {exc}'
            ) from exc
        from nostr_imagegen.engine.planner import Planner

        encode = encode_settings(runner_options(config))
        slots: list[EngineSlot] = list(build_ray_slots(config, encode))
        return Planner(config.engine_config()), [], slots
    else:
        from nostr_imagegen.engine.generate import Engine

        engine_config = config.engine_config()
        devices = config.engine.devices or (None,)
        engines = [Engine(engine_config, device=device) for device in devices]
    for each in engines:
        warm = getattr(each, "warm", None)
        if warm is not None:
            # Load the default model now: a broken model fails the start, not the first job.
            await asyncio.to_thread(warm)
    return engines[0], engines, []


async def _serve(
    config: ServiceConfig,
    keys: Signer,
    stop: asyncio.Event,
    planner: PlannerLike,
    engines: list[EngineLike],
    slots: list[EngineSlot],
    on_ready: Callable[[JobRunner], Any] | None,
    runner_kwargs: dict[str, Any],
) -> JobRunner:
    from nostr_imagegen.service.relay import RelayPool

    service = config.service
    ledger = Ledger(service.ledger, durable=service.ledger_durable)
    with ledger, build_hosts(config.storage, keys) as hosts:
        if service.ledger_retention_days > 0:
            pruned = await asyncio.to_thread(ledger.prune, service.ledger_retention_days * 86400.0)
            if pruned:
                logger.info("forgot %d finished job(s) older than the retention", pruned)
        announcement = None
        if config.announce.enabled:
            announcement = Announcement(
                name=config.announce.name,
                about=config.announce.about,
                identifier=config.announce.identifier,
                picture=config.announce.picture,
                refresh_hours=config.announce.refresh_hours,
                # NIP-89: a priced DVM states its prices (msats) beside its params.
                extra=None if config.pricing.free else {"pricing": price_tags(config.pricing)},
            )
        pool = RelayPool(
            service.relays,
            keys=keys,
            max_extra_relays=max(1, service.max_reply_relays),
            extra_relays_public_only=not service.allow_private_relays,
        )
        async with (
            pool,
            payment_pieces(
                config,
                pool=pool,
                ledger=ledger,
                plan=planner.plan,
                provider_pubkey=keys.public_key,
            ) as payment,
        ):
            _add_operations(config, pool, runner_kwargs)
            metrics = runner_kwargs.pop("_metrics", None)
            runner = JobRunner(
                keys=keys,
                pool=pool,
                engine=engines if engines else planner,
                slots=slots or None,
                scheduling=config.engine.scheduler,
                hosts=hosts,
                ledger=ledger,
                fetch_policy=config.fetch.policy(),
                accepted_kinds=service.accepted_kinds,
                queue_size=config.queue.size,
                options=runner_options(config),
                announcement=announcement,
                **{**payment, **runner_kwargs},
            )
            ops = None
            if metrics is not None:
                from nostr_imagegen.service.metrics import OpsServer

                metrics.attach(runner, pool)
                address = config.metrics.listen_address()
                assert address is not None
                ops = await OpsServer(metrics, *address).start()
            await runner.start()
            try:
                if on_ready is not None:
                    on_ready(runner)
                await stop.wait()
            finally:
                await runner.stop()
                if ops is not None:
                    await ops.close()
    return runner


def _add_operations(config: ServiceConfig, pool: Any, kwargs: dict[str, Any]) -> None:
    """``[policy]``, ``[chaining]`` and ``[metrics]`` as runner arguments (those the caller
    passed win); the metrics' hooks run before the caller's own."""
    from nostr_imagegen.service.chaining import ChainResolver
    from nostr_imagegen.service.policy import RequestPolicy

    kwargs.setdefault("policy", RequestPolicy(config.policy))
    chaining = config.chaining
    if chaining.enabled and kwargs.get("input_resolver") is None:
        kwargs["input_resolver"] = ChainResolver(
            pool, wait_s=chaining.wait_s, max_waiting=chaining.max_waiting
        )
    if config.metrics.listen is None:
        return
    from nostr_imagegen.service.metrics import ServiceMetrics

    metrics = ServiceMetrics(
        recent_jobs=config.metrics.recent_jobs, stuck_after_s=config.metrics.stuck_after_s
    )
    for name, hook in metrics.hooks().items():
        kwargs[name] = _both(hook, kwargs.get(name))
    kwargs["_metrics"] = metrics


def _both(first: Callable[..., Any], second: Callable[..., Any] | None) -> Callable[..., Any]:
    if second is None:
        return first

    def call(*args: Any) -> Any:
        first(*args)
        return second(*args)

    return call
