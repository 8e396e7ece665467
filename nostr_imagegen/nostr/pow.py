"""NIP-13 proof of work: the difficulty of an event id and the target its ``nonce`` commits to.

    {"id": "000006d8...", "tags": [["nonce", "776797", "20"]], ...}
    difficulty("000006d8...") == 21    committed_target(event) == 20

The difficulty is the number of leading zero bits of the id. The third element of the
``nonce`` tag is the target the miner aimed at: a service asking for 20 bits refuses an event
that committed to less even when its id is luckily longer in zeros (NIP-13), so spammers
mining cheap targets in bulk gain nothing from the odd lucky hit.
"""

from __future__ import annotations

from nostr_imagegen.nostr.event import Event, UnsignedEvent, compute_event_id

__all__ = ["committed_target", "difficulty", "mine"]

#: A ``nonce`` target above this is not a number of bits of a 256-bit id.
_MAX_BITS = 256


def difficulty(event_id: str) -> int:
    """Leading zero bits of a hex event id (``"002f..."`` -> 10)."""
    bits = 0
    for char in event_id:
        nibble = int(char, 16)
        if nibble:
            return bits + 4 - nibble.bit_length()
        bits += 4
    return bits


def committed_target(event: Event | UnsignedEvent) -> int | None:
    """The target difficulty the first ``nonce`` tag commits to, or None (no tag, no target,
    or not a number from 0 to 256)."""
    tag = event.first_tag("nonce")
    if tag is None or len(tag) < 3:
        return None
    text = tag[2].strip()
    if not text.isdigit() or len(text) > 3:
        return None
    target = int(text)
    return target if target <= _MAX_BITS else None


def mine(template: UnsignedEvent, pubkey: str, bits: int, *, created_at: int) -> UnsignedEvent:
    """``template`` with a ``nonce`` tag committing to ``bits`` and a nonce that reaches them,
    for ``pubkey`` at ``created_at`` (sign the result with that key). A customer-side helper
    (tests, the submit command); the cost doubles with each bit."""
    if not 0 <= bits <= _MAX_BITS:
        raise ValueError(f"bits must be 0..{_MAX_BITS}")
    others = tuple(tag for tag in template.tags if not tag or tag[0] != "nonce")
    nonce = 0
    while True:
        tags = (*others, ("nonce", str(nonce), str(bits)))
        event_id = compute_event_id(pubkey, created_at, template.kind, tags, template.content)
        if difficulty(event_id) >= bits:
            return template.model_copy(update={"tags": tags, "created_at": created_at})
        nonce += 1
