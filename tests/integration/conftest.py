"""Real relays on 127.0.0.1 for integration tests.

Fixtures:

- ``relay``: a started ``nostr_imagegen.service.localrelay.LocalRelay`` (the demo's relay):
  PyPI ``nostr-relay`` (SQLite storage) in a child process on a free port, with its own
  database in a temporary folder. A test may ``relay.stop()`` (graceful),
  ``relay.stop(kill=True)`` (SIGKILL, like a crash), ``relay.start()`` again (same port, same
  database) or ``relay.restart()``. The process is always ended after the test.
  ``relay.url`` is ``ws://127.0.0.1:<port>``.
- ``relay_url``: ``relay.url``.
- ``relay_factory``: call it for more relays in one test (``second = relay_factory()``).
- ``free_port_factory``: call it for a free TCP port on 127.0.0.1 (a relay that is not there).
- ``local_relay_url``: nostr-sdk's in-process ``LocalRelay`` (Rust, spec-faithful; not ours,
  despite the name).
- ``auth_relay_url``: a nostr-sdk ``LocalRelay`` that demands NIP-42 AUTH before accepting
  writes: it sends ``["AUTH", challenge]`` on connect and answers unauthenticated writes with
  ``auth-required:``.

Notes on nostr-relay's behaviour (worth knowing when writing assertions): it answers a
rejected event with an empty id (``["OK", "", false, "invalid: ..."]``), reports a duplicate
as ``["OK", id, false, "duplicate: exists"]``, and refuses events older than a year or more
than an hour in the future. ``start()``/``stop()`` block for up to a few seconds; from async
code call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nostr_imagegen.service.localrelay import (
    LocalRelay,
    accepts_connections,
    find_nostr_relay,
    free_port,
)

_STARTUP_TIMEOUT_S = 60.0


@pytest.fixture
def free_port_factory() -> Callable[[], int]:
    """Call it for a TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_port


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[Callable[[], LocalRelay]]:
    """Start as many nostr-relay servers as a test needs; all are ended afterwards."""
    executable = find_nostr_relay()
    if executable is None:
        pytest.skip("the nostr-relay package (PyPI nostr-relay) is not installed")
    started: list[LocalRelay] = []

    def make() -> LocalRelay:
        handle = LocalRelay(tmp_path / f"relay-{len(started)}", executable=executable)
        started.append(handle)
        return handle.start()

    try:
        yield make
    finally:
        for handle in started:
            handle.stop(kill=True)


@pytest.fixture
def relay(relay_factory: Callable[[], LocalRelay]) -> LocalRelay:
    """A started nostr-relay on 127.0.0.1 (stop/start it to test reconnection)."""
    return relay_factory()


@pytest.fixture
def relay_url(relay: LocalRelay) -> str:
    """``ws://127.0.0.1:<port>`` of the ``relay`` fixture."""
    return relay.url


def _run_local_relay(*, nip42_writes: bool) -> Iterator[str]:
    nostr_sdk = pytest.importorskip("nostr_sdk")
    port = free_port()
    builder = nostr_sdk.LocalRelayBuilder().addr("127.0.0.1").port(port)
    if nip42_writes:
        mode = nostr_sdk.LocalRelayBuilderNip42Mode.WRITE
        builder = builder.nip42(nostr_sdk.LocalRelayBuilderNip42(mode=mode))
    local = builder.build()
    # run() binds and returns; the relay then serves from nostr-sdk's own threads. It runs in
    # a thread of its own so it never touches the event loop pytest-asyncio gives the test.
    starter = threading.Thread(target=asyncio.run, args=(local.run(),), daemon=True)
    starter.start()
    starter.join(_STARTUP_TIMEOUT_S)
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while not accepts_connections(port):
        if time.monotonic() > deadline:
            local.shutdown()
            raise RuntimeError("nostr-sdk LocalRelay did not start")
        time.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(Exception):
            local.shutdown()


@pytest.fixture
def local_relay_url() -> Iterator[str]:
    """An in-process nostr-sdk LocalRelay on 127.0.0.1."""
    yield from _run_local_relay(nip42_writes=False)


@pytest.fixture
def auth_relay_url() -> Iterator[str]:
    """An in-process nostr-sdk LocalRelay that requires NIP-42 AUTH for writes."""
    yield from _run_local_relay(nip42_writes=True)
