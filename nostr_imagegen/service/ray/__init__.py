"""The Ray backend (``[engine] backend = "ray"``, docs/scaling.md): engines in Ray actors.

    slots = build_ray_slots(config, encode)   # connects (or starts a local cluster), one
                                              # RaySlot per [engine.ray] workers
    ...                                       # the front's scheduler sends jobs to them
    for slot in slots:
        await slot.close()                    # ends the actors; the last one leaves Ray

Internal: users reach it through configuration. Ray is imported only here and below.

Each worker is a named actor in the ``[engine.ray] namespace`` (``nostr-imagegen-worker-0``,
...), detached from the front's process: a front that crashed and started again finds its
workers by name, models still loaded. A found worker built from another configuration (the
operator changed the models) is replaced.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nostr_imagegen.errors import ConfigError
from nostr_imagegen.service.ray.cluster import disconnect, start_or_connect
from nostr_imagegen.service.ray.slot import RaySlot

if TYPE_CHECKING:
    from nostr_imagegen.engine_config import EngineConfig
    from nostr_imagegen.service.config import ServiceConfig
    from nostr_imagegen.service.scaling import RaySection
    from nostr_imagegen.service.slots import EncodeSettings

__all__ = ["RaySlot", "build_ray_slots", "start_ray_workers", "worker_name"]

logger = logging.getLogger(__name__)

#: How long a worker actor may take to start (its process, not its models: those load on
#: the first job).
_START_TIMEOUT_S = 120.0


def worker_name(index: int) -> str:
    """The actor name of worker ``index`` in its namespace."""
    return f"nostr-imagegen-worker-{index}"


def build_ray_slots(config: ServiceConfig, encode: EncodeSettings) -> list[RaySlot]:
    """Connect to Ray as ``[engine.ray]`` says and give one slot per worker actor (created,
    or found by name). Raises ``ConfigError`` (no Ray, no cluster, a worker that cannot
    start)."""
    return start_ray_workers(config.engine_config(), config.engine.ray, encode)


def start_ray_workers(
    engine_config: EngineConfig,
    section: RaySection,
    encode: EncodeSettings,
    *,
    temp_dir: str | None = None,
    torch_threads: int | None = None,
) -> list[RaySlot]:
    """``build_ray_slots`` from its parts. ``temp_dir``: Ray's session folder for a local
    cluster; ``torch_threads``: intra-op threads of each worker's torch (None: Ray's
    default, one per CPU the worker is given)."""
    import ray

    from nostr_imagegen.engine.planner import Planner
    from nostr_imagegen.service.ray.actor import config_digest, start_worker

    connected_here = start_or_connect(section, temp_dir=temp_dir)
    config_data = engine_config.model_dump(mode="json")
    digest = config_digest(config_data, encode)
    start = functools.partial(
        start_worker,
        config_data=config_data,
        encode=encode,
        num_gpus=section.num_gpus,
        num_cpus=section.num_cpus,
        max_restarts=section.max_restarts,
        # Ray's CUDA_VISIBLE_DEVICES shows a worker its own GPU only: "cuda" is that one.
        device="cuda" if section.num_gpus > 0 else None,
        torch_threads=torch_threads,
    )
    planner = Planner(engine_config)
    open_slots = [section.workers]

    def one_closed() -> None:
        open_slots[0] -= 1
        if open_slots[0] == 0 and connected_here:
            disconnect()

    slots = []
    for index in range(section.workers):
        name = worker_name(index)
        actor = _actor(ray, functools.partial(start, name), name, digest)
        stats = ray.get(actor.stats.remote(), timeout=_START_TIMEOUT_S)
        slots.append(
            RaySlot(
                actor,
                name=f"ray-worker-{index}",
                planner=planner,
                loaded=frozenset(stats["loaded_models"]),
                on_close=one_closed,
            )
        )
    logger.info("%d Ray worker(s) in namespace %s", len(slots), section.namespace)
    return slots


def _actor(ray: Any, start: Callable[[], Any], name: str, digest: str) -> Any:
    """The worker ``name``: the running one when it was built from this configuration, else
    a new one. Raises ``ConfigError`` when it does not start (no resources for it)."""
    actor = start()
    if _started_digest(ray, actor, name) != digest:
        logger.info("%s was built from another configuration: replacing it", name)
        ray.kill(actor, no_restart=True)
        _wait_until_gone(ray, name)
        actor = start()
        _started_digest(ray, actor, name)
    return actor


def _started_digest(ray: Any, actor: Any, name: str) -> str:
    try:
        digest: str = ray.get(actor.ping.remote(), timeout=_START_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError as exc:
        ray.kill(actor, no_restart=True)
        raise ConfigError(
            f"[engine.ray]: worker {name} did not start within {_START_TIMEOUT_S:.0f} s; does "
            "the cluster have the num_gpus and num_cpus it asks for free?"
        ) from exc
    except ray.exceptions.RayError as exc:
        raise ConfigError(f"[engine.ray]: worker {name} failed to start: {exc}") from exc
    return digest


def _wait_until_gone(ray: Any, name: str) -> None:
    """A killed actor's name is free only once Ray has noticed."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name)
        except ValueError:
            return
        time.sleep(0.1)
