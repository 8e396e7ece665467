"""Sliding-window job counts: per customer and for the whole service.

    limiter = RateLimiter({60.0: 5, 86400.0: 200}, clock=time.time)
    limiter.exceeded(customer)   # -> None, or the window that is full: (60.0, 5)
    limiter.record(customer)     # count one more job now

Exact sliding windows (a log of timestamps, at most ``limit`` per key and window), so a burst
at the edge of a fixed minute cannot get twice the allowance. The clock is injected: tests
step it by hand and never wait.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping

__all__ = ["RateLimiter"]

#: Customers remembered at most; the one seen longest ago is forgotten first (it has the
#: fewest recent jobs, so forgetting it gives away the least).
DEFAULT_MAX_KEYS = 50_000


class RateLimiter:
    """At most ``limits[window_s]`` jobs per key in any ``window_s`` seconds."""

    def __init__(
        self,
        limits: Mapping[float, int],
        *,
        clock: Callable[[], float],
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self._limits = {float(w): int(n) for w, n in limits.items() if n > 0}
        self._clock = clock
        self._max_keys = max_keys
        self._longest = max(self._limits, default=0.0)
        self._biggest = max(self._limits.values(), default=0)
        self._log: OrderedDict[str, deque[float]] = OrderedDict()

    @property
    def active(self) -> bool:
        return bool(self._limits)

    def _times(self, key: str, now: float) -> deque[float]:
        times = self._log.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self._longest:
            times.popleft()
        return times

    def exceeded(self, key: str) -> tuple[float, int] | None:
        """The first full window ``(window_s, limit)`` for ``key`` now, or None."""
        now = self._clock()
        times = self._times(key, now)
        for window, limit in sorted(self._limits.items()):
            if sum(1 for t in times if t > now - window) >= limit:
                return window, limit
        return None

    def record(self, key: str) -> None:
        """Count one job for ``key`` now."""
        if not self._limits:
            return
        now = self._clock()
        times = self._log.get(key)
        if times is None:
            times = self._log[key] = deque(maxlen=self._biggest)
            while len(self._log) > self._max_keys:
                self._log.popitem(last=False)
        self._log.move_to_end(key)
        self._times(key, now).append(now)
