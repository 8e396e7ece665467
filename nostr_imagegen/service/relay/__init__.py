"""Relay connections on websockets: a pool that stays subscribed and publishes with receipts.

A thin asyncio adapter around the sans-I/O ``RelaySession`` (nostr_imagegen.nostr.session)::

    async with RelayPool(["wss://relay.damus.io", "wss://nos.lol"], keys=keys) as pool:
        await pool.subscribe("jobs", [Filter(kinds=[5100])], lookback_s=600)
        async for relay_url, event in pool.events():          # each event id once
            result = await pool.publish(answer, relays=job.relays, timeout_s=10)
            result.accepted_by                                # ("wss://nos.lol", ...)

What the pool does for you:

- one task per relay: a slow or dead relay never blocks the others; every publish waits per
  relay, bounded by ``timeout_s``;
- reconnects with exponential backoff and jitter; after a reconnect every subscription is
  requested again with ``since`` = newest ``created_at`` seen minus a slack, so events
  published while disconnected still arrive, once;
- each event id is emitted once per pool (a bounded LRU of ids) whichever relays carry it;
- NIP-42: with ``keys`` a challenge is answered automatically; a publish refused with
  ``auth-required:`` is sent once more after the AUTH is accepted;
- CLOSED subscriptions are requested again after a backoff unless the reason will not change
  (``blocked:``, ``restricted:``, ``auth-required:``, ``invalid:``, ``unsupported:``, ``pow:``);
- keepalive pings (a relay that stops answering is dropped and reconnected); frames larger
  than ``max_frame_bytes`` are dropped, and larger than ``4 x max_frame_bytes`` (at least
  1 MiB) end the connection: websockets cannot skip a frame it refuses to buffer;
- ``publish(..., relays=[...])`` also reaches relays a job request named (its ``relays``
  tag): a bounded number, ``ws://``/``wss://`` only, through short-lived connections that by
  default may only reach public internet addresses (the request is a stranger's).

Logs carry the relay URL (``extra={"relay": url}``) and event ids, never keys or contents.
HTTP proxies from the environment are not used and redirects are not followed.

The modules, one concern each: ``urls`` (``normalize_relay_url``), ``backoff``
(``backoff_delay``), ``connection`` (opening a websocket: no redirects, no proxies, optional
pinning to a checked public address), ``publish`` (``publish_once`` and its results), ``link``
(one relay kept connected, with its ``LinkSettings``) and ``pool`` (``RelayPool``). Import
from this package: ``from nostr_imagegen.service.relay import RelayPool, PublishResult``.
"""

from nostr_imagegen.service.relay.backoff import backoff_delay
from nostr_imagegen.service.relay.link import RelayStatus
from nostr_imagegen.service.relay.pool import RelayPool
from nostr_imagegen.service.relay.publish import PublishResult, RelayOutcome, publish_once
from nostr_imagegen.service.relay.urls import normalize_relay_url

__all__ = [
    "PublishResult",
    "RelayOutcome",
    "RelayPool",
    "RelayStatus",
    "backoff_delay",
    "normalize_relay_url",
    "publish_once",
]
