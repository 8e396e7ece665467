"""``[engine]``: how many engines the front drives, where they run, and how jobs are handed
to them (docs/scaling.md)::

    [engine]
    backend = "local"              # "local": engines in this process; "ray": Ray actors
    devices = ["cuda:0", "cuda:1"] # local: one engine per device; empty: one, on `device`
    batch_wait_ms = 20             # how long a free engine waits to fill a batch
    max_wait_s = 60.0              # no job is passed over for longer (no starvation)
    spill_after = 4                # queued jobs of a model busy elsewhere before another
                                   # engine loads it too
    model_aware = true             # false: plain FIFO (each free engine takes the oldest job)

    [engine.ray]                   # backend = "ray"
    address = "auto"               # an existing cluster; absent: a local one on 127.0.0.1
    workers = 2                    # actors, each holding its own Engine and pipeline cache
    num_gpus = 1.0                 # per worker (0 for CPU workers)
    num_cpus = 1.0
    max_restarts = 3               # a dead worker's actor is restarted and rejoins the pool

A job whose engine died under it runs again on another one, up to ``[service] max_attempts``
starts in all (the same count that stops crash loops across restarts).

How many jobs one pipeline call takes is a model's own setting: ``[models.X] max_batch``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = ["EngineSection", "RaySection", "SchedulerSettings"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SchedulerSettings(_Section):
    """How the front hands queued jobs to free engines (``service.scheduler``)."""

    #: A free engine with fewer compatible jobs than a batch holds waits this long for more.
    batch_wait_ms: int = Field(default=20, ge=0, le=10_000)
    #: The longest a queued job is passed over for jobs of a loaded model.
    max_wait_s: float = Field(default=60.0, gt=0.0, le=86_400.0)
    #: Queued jobs of a model loaded on a busy engine before a free one loads it too.
    spill_after: int = Field(default=4, ge=1, le=10_000)
    #: False: first in, first out, whatever is loaded where (a baseline).
    model_aware: bool = True


class RaySection(_Section):
    """``[engine.ray]``: the workers of ``backend = "ray"``."""

    #: A running cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``); None: start a
    #: local one, every Ray process on 127.0.0.1.
    address: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    workers: int = Field(default=1, ge=1, le=1024)
    num_gpus: float = Field(default=1.0, ge=0.0, le=64.0)
    num_cpus: float = Field(default=1.0, ge=0.0, le=1024.0)
    #: Restarts of a worker's actor after its process died (-1: without end).
    max_restarts: int = Field(default=3, ge=-1, le=1000)
    #: The Ray namespace of the actors (two DVMs on one cluster keep theirs apart).
    namespace: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = (
        "nostr-imagegen"
    )


class EngineSection(SchedulerSettings):
    """``[engine]``: see the module doc."""

    backend: Literal["local", "ray"] = "local"
    #: ``backend = "local"``: one engine per device; empty: one engine on the top-level
    #: ``device``.
    devices: tuple[Annotated[str, StringConstraints(pattern=r"^[a-z]+(:[0-9]{1,3})?$")], ...] = (
        Field(default=(), max_length=64)
    )
    ray: RaySection = Field(default_factory=RaySection)

    @property
    def scheduler(self) -> SchedulerSettings:
        """The scheduling part alone."""
        return SchedulerSettings.model_validate(
            {name: getattr(self, name) for name in SchedulerSettings.model_fields}
        )
