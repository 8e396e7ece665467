"""How long a relay connection waits before trying again.

    >>> [round(backoff_delay(n, base_s=1.0, max_s=60.0, rng=lambda: 0.0), 1) for n in range(4)]
    [0.5, 1.0, 2.0, 4.0]

Exponential, capped, and jittered by a factor in ``[0.5, 1)``: many clients cut off by the
same relay restart do not all come back in the same second.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["backoff_delay"]

_rng = random.SystemRandom()


def backoff_delay(
    attempt: int, *, base_s: float, max_s: float, rng: Callable[[], float] = _rng.random
) -> float:
    """Seconds to wait before reconnect ``attempt`` (0, 1, ...): exponential, capped, jittered.

    ``min(max_s, base_s * 2**attempt)`` scaled by a random factor in ``[0.5, 1)``, so many
    clients cut off together do not come back together.
    """
    ceiling = min(max_s, base_s * 2.0 ** min(attempt, 32))
    return ceiling * (0.5 + 0.5 * rng())
