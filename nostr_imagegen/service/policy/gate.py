"""``RequestPolicy``: the abuse rules of ``[policy]`` in the order the runner applies them.

1. ``ignore(event)``, before the request is recorded: stale, expired or future requests
   (``freshness``). Silence: NIP-90 has nothing to say to a request nobody waits for.
2. ``refuse(event, ...)``, after it is recorded and before it is decrypted or parsed (cheap
   checks first, so abuse costs us little): deny list, allow list, NIP-13 proof of work,
   concurrent jobs, per-customer and global rates. A request passing all of them counts
   against the rates.
3. ``refuse_prompt(job)``, after parsing and before any engine time: the prompt hook.

Each refusal is ``Refusal(rule, reason)``; the runner answers ``reason`` in an `error`
feedback, e.g. ``["status", "error", "rate limit: at most 5 jobs per minute per customer"]``,
and ``refusals`` counts them by rule for the metrics.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.nostr.pow import committed_target, difficulty
from nostr_imagegen.service.policy.config import PolicyConfig
from nostr_imagegen.service.policy.freshness import staleness
from nostr_imagegen.service.policy.lists import KeyListFile
from nostr_imagegen.service.policy.prompt import PromptPolicy, WordListPolicy
from nostr_imagegen.service.policy.ratelimit import RateLimiter

__all__ = ["Refusal", "RequestPolicy"]

_MINUTE = 60.0
_DAY = 86_400.0
#: The key the global limits are counted under (not a public key: those are 64 hex).
_EVERYONE = "*"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is not served: ``rule`` (a metric label) and ``reason`` (for people)."""

    rule: str
    reason: str


def _per(window: float) -> str:
    return "minute" if window == _MINUTE else "day"


class RequestPolicy:
    """The abuse rules (see the module docstring). ``clock`` is wall-clock seconds
    (``time.time``); tests pass their own."""

    def __init__(
        self,
        config: PolicyConfig | None = None,
        *,
        prompt_policy: PromptPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config = config or PolicyConfig()
        self._clock = clock
        self._customers = RateLimiter(
            {_MINUTE: config.max_jobs_per_minute, _DAY: config.max_jobs_per_day}, clock=clock
        )
        self._everyone = RateLimiter(
            {_MINUTE: config.global_max_jobs_per_minute, _DAY: config.global_max_jobs_per_day},
            clock=clock,
        )
        interval = config.list_check_interval_s
        self._allow = _list(config.allow_list, clock, interval)
        self._deny = _list(config.deny_list, clock, interval)
        if prompt_policy is None and config.prompt_deny_words_file is not None:
            prompt_policy = WordListPolicy.from_file(config.prompt_deny_words_file)
        self.prompt_policy = prompt_policy
        self.refusals: Counter[str] = Counter()

    def _count(self, refusal: Refusal) -> Refusal:
        self.refusals[refusal.rule] += 1
        return refusal

    def ignore(self, event: Event) -> Refusal | None:
        """Rule 1: a reason to drop ``event`` without an answer, or None."""
        found = staleness(
            event,
            self._clock(),
            honour_expiration=self.config.honour_expiration,
            max_age_s=self.config.max_age_s,
            max_future_s=self.config.max_future_s,
        )
        return None if found is None else self._count(Refusal(*found))

    def refuse(self, event: Event, *, active_jobs_of_customer: int) -> Refusal | None:
        """Rule 2: a reason to answer `error` to ``event``, or None (and it is counted)."""
        config, customer = self.config, event.pubkey
        if self._deny is not None and customer in self._deny:
            return self._count(Refusal("denied", "this service does not serve your key"))
        if self._allow is not None and customer not in self._allow:
            return self._count(
                Refusal("not_allowed", "this service serves only the keys on its allow list")
            )
        if config.min_pow_bits:
            target = committed_target(event)
            if target is None or target < config.min_pow_bits:
                return self._count(
                    Refusal(
                        "pow",
                        f"proof of work required (NIP-13): a nonce tag committing to at least "
                        f"{config.min_pow_bits} bits",
                    )
                )
            if difficulty(event.id) < config.min_pow_bits:
                return self._count(
                    Refusal(
                        "pow",
                        f"proof of work too low (NIP-13): the id has {difficulty(event.id)} "
                        f"leading zero bits, {config.min_pow_bits} are required",
                    )
                )
        if config.max_concurrent_jobs and active_jobs_of_customer >= config.max_concurrent_jobs:
            return self._count(
                Refusal(
                    "concurrent",
                    f"at most {config.max_concurrent_jobs} jobs per customer at a time; "
                    "wait for one to finish",
                )
            )
        full = self._customers.exceeded(customer)
        if full is not None:
            window, limit = full
            return self._count(
                Refusal("rate", f"rate limit: at most {limit} jobs per {_per(window)} per customer")
            )
        full = self._everyone.exceeded(_EVERYONE)
        if full is not None:
            window, limit = full
            return self._count(
                Refusal(
                    "global_rate",
                    f"the service takes at most {limit} jobs per {_per(window)}; try again later",
                )
            )
        self._customers.record(customer)
        self._everyone.record(_EVERYONE)
        return None

    def refuse_prompt(self, job: ImageJob) -> Refusal | None:
        """Rule 3: the prompt hook's reason to refuse ``job``, or None."""
        if self.prompt_policy is None:
            return None
        reason = self.prompt_policy(job)
        return None if reason is None else self._count(Refusal("prompt", reason))


def _list(path: Path | None, clock: Callable[[], float], interval: float) -> KeyListFile | None:
    return None if path is None else KeyListFile(path, clock=clock, check_interval_s=interval)
