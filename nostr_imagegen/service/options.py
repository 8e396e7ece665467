"""The runner's settings and counters: the NIP-89 announcement, tuning knobs, statistics.

``service.app.runner_options`` fills ``RunnerOptions`` from the ``[service]`` and ``[output]``
sections of the TOML configuration; an embedding program builds them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Announcement", "RunnerOptions", "RunnerStats"]


@dataclass(frozen=True, slots=True)
class Announcement:
    """NIP-89 handler information (kind 31990) published at start and every ``refresh_hours``."""

    name: str
    about: str
    identifier: str = "nostr-imagegen"
    picture: str | None = None
    refresh_hours: float = 12.0
    extra: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """Tuning knobs; the defaults suit a single-GPU DVM on public relays."""

    #: Requests older than this (by ``created_at``) are not served when a relay sends them.
    lookback_s: int = 120
    #: At most one step-progress feedback per job this often.
    progress_interval_s: float = 2.0
    payment_timeout_s: float = 600.0
    #: Priced jobs waiting for payment at the same time; more get `error` (busy).
    max_payment_waits: int = 64
    #: How long ``stop()`` lets the running job finish before interrupting it.
    shutdown_timeout_s: float = 30.0
    publish_timeout_s: float = 10.0
    #: A stored answer no relay acknowledged is published again this often.
    republish_interval_s: float = 5.0
    #: At most this many relays from a request's ``relays`` tag get our answers.
    max_reply_relays: int = 3
    #: Let a request's ``relays`` tag name loopback or private addresses (tests, LANs).
    allow_private_relays: bool = False
    #: NIP-40 expiration of feedback events, seconds from now (None: none).
    feedback_expiration_s: int | None = 24 * 3600
    #: NIP-40 expiration of result events, seconds from now (None: none).
    result_expiration_s: int | None = None
    #: A job that was processing when the service died this many times is answered `error`.
    max_attempts: int = 2
    #: Unfinished jobs older than this at startup are answered `error` instead of resumed.
    resume_max_age_s: float = 3600.0
    #: Output type when the request has no ``output`` tag.
    default_output: str = "image/png"
    embed_metadata: bool = False
    quality: int = 90


@dataclass(slots=True)
class RunnerStats:
    """Counters since start (for logs, health checks and the benchmark)."""

    received: int = 0
    duplicates: int = 0
    ignored: int = 0
    rejected: int = 0
    busy: int = 0
    cancelled: int = 0
    failed: int = 0
    succeeded: int = 0
    republished: int = 0
