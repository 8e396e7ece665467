"""Requests that are stale, expired or from the future: ignored, as NIP-90 and NIP-40 ask.

    ["expiration", "1700000000"]     # NIP-40: not to be served after this time

A request is ignored (no answer at all: an answer to a request its customer gave up on is
noise) when its ``expiration`` has passed, when its ``created_at`` is older than
``max_age_s``, or when it is more than ``max_future_s`` ahead of our clock (a customer
pre-dating requests to dodge the look-back). A ``0`` setting turns its rule off.
"""

from __future__ import annotations

from nostr_imagegen.nostr.event import Event

__all__ = ["expiration_of", "staleness"]


def expiration_of(event: Event) -> int | None:
    """The NIP-40 ``expiration`` timestamp of ``event``, or None (absent or not a number)."""
    value = event.tag_value("expiration")
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdigit() and len(text) <= 16 else None


def staleness(
    event: Event, now: float, *, honour_expiration: bool, max_age_s: float, max_future_s: float
) -> tuple[str, str] | None:
    """``(rule, reason)`` when ``event`` should be ignored at ``now``, else None."""
    if honour_expiration:
        expires = expiration_of(event)
        if expires is not None and expires <= now:
            return "expired", f"expired at {expires} (NIP-40)"
    if max_age_s > 0 and event.created_at < now - max_age_s:
        return "too_old", f"created {int(now - event.created_at)} s ago"
    if max_future_s > 0 and event.created_at > now + max_future_s:
        return "future", f"created {int(event.created_at - now)} s in the future"
    return None
