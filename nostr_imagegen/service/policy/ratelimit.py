"""Sliding-window job counts: per customer and for the whole service.

    limiter = RateLimiter({60.0: 5, 86400.0: 200}, clock=time.time)
    limiter.exceeded(customer)   # -> None, or the window that is full: (60.0, 5)
    limiter.record(customer)     # count one more job now

Exact sliding windows (a sorted log of timestamps, at most the biggest limit per key; a
check is a binary search), so a burst at the edge of a fixed minute cannot get twice the
allowance. The clock is injected: tests
step it by hand and never wait.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
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
        self._log: OrderedDict[str, list[float]] = OrderedDict()

    @property
    def active(self) -> bool:
        return bool(self._limits)

    def _times(self, key: str, now: float) -> list[float]:
        """``key``'s job times inside the longest window, oldest first."""
        times = self._log.get(key)
        if times is None:
            return []
        expired = bisect.bisect_right(times, now - self._longest)
        if expired:
            del times[:expired]
        return times

    def exceeded(self, key: str) -> tuple[float, int] | None:
        """The first full window ``(window_s, limit)`` for ``key`` now, or None."""
        now = self._clock()
        times = self._times(key, now)
        for window, limit in sorted(self._limits.items()):
            # Times are sorted: the count inside a window is one binary search.
            if len(times) - bisect.bisect_right(times, now - window) >= limit:
                return window, limit
        return None

    def record(self, key: str) -> None:
        """Count one job for ``key`` now."""
        if not self._limits:
            return
        now = self._clock()
        times = self._times(key, now)
        if key not in self._log:
            self._log[key] = times
            while len(self._log) > self._max_keys:
                self._log.popitem(last=False)
        self._log.move_to_end(key)
        # A clock stepped back (NTP) must not unsort the log: count the job at the last time.
        times.append(max(now, times[-1]) if times else now)
        if len(times) > self._biggest:  # only the newest `biggest` can ever matter
            del times[: len(times) - self._biggest]
