"""Real relays on 127.0.0.1 for integration tests.

Fixtures:

- ``relay``: a started ``RelayProcess``, PyPI ``nostr-relay`` (SQLite storage) running as a
  child process on a free port with its own database in a temporary folder. A test may
  ``relay.stop()`` (graceful), ``relay.stop(kill=True)`` (SIGKILL, like a crash) and
  ``relay.start()`` again: same port, same database. The process is always ended after the
  test. ``relay.url`` is ``ws://127.0.0.1:<port>``.
- ``relay_url``: ``relay.url``.
- ``relay_factory``: call it for more relays in one test (``second = relay_factory()``).
- ``free_port_factory``: call it for a free TCP port on 127.0.0.1 (a relay that is not there).
- ``local_relay_url``: nostr-sdk's in-process ``LocalRelay`` (Rust, spec-faithful).
- ``auth_relay_url``: a ``LocalRelay`` that demands NIP-42 AUTH before accepting writes: it
  sends ``["AUTH", challenge]`` on connect and answers unauthenticated writes with
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
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_STARTUP_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _relay_executable() -> str:
    beside_python = Path(sys.executable).with_name("nostr-relay")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nostr-relay")
    if found is None:
        pytest.skip("the nostr-relay package (PyPI nostr-relay) is not installed")
    return found


_CONFIG = """\
DEBUG: false
relay_name: nostr_imagegen test relay
relay_description: started by tests/integration/conftest.py
storage:
  sqlalchemy.url: "sqlite+aiosqlite:///{db}"
  num_concurrent_reqs: 10
  num_concurrent_adds: 2
  validators:
    - nostr_relay.validators.is_not_too_large
    - nostr_relay.validators.is_signed
    - nostr_relay.validators.is_recent
verification:
  nip05_verification: disabled
gunicorn:
  bind: "127.0.0.1:{port}"
  host: 127.0.0.1
  loglevel: warning
authentication:
  enabled: false
max_event_size: 262144
message_timeout: 1800
subscription_limit: 64
max_limit: 6000
logging:
  version: 1
  formatters:
    simple:
      format: "%(asctime)s %(name)s %(levelname)s %(message)s"
  handlers:
    console:
      class: logging.StreamHandler
      formatter: simple
      stream: ext://sys.stdout
  root:
    level: WARNING
    handlers: [console]
"""


class RelayProcess:
    """A ``nostr-relay`` server in a child process, restartable on the same port and data."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.db_path = workdir / "relay.sqlite3"
        self.config_path = workdir / "config.yaml"
        self.log_path = workdir / "relay.log"
        self._process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(_CONFIG.format(db=self.db_path, port=self.port))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = _STARTUP_TIMEOUT_S) -> None:
        """Start the server and wait until it accepts connections."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    _relay_executable(),
                    "-c",
                    str(self.config_path),
                    "serve",
                    "--use-uvicorn",
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout_s
        while not _accepts_connections(self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"nostr-relay exited early:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop(kill=True)
                raise RuntimeError(f"nostr-relay did not start in {timeout_s}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (graceful) or, with ``kill``, SIGKILL like a crash."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Wait until the port is free again so a restart can bind it.
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while _accepts_connections(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __repr__(self) -> str:
        return f"RelayProcess({self.url!r}, running={self.running})"


@pytest.fixture
def free_port_factory() -> Callable[[], int]:
    """Call it for a TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_port


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[Callable[[], RelayProcess]]:
    """Start as many nostr-relay servers as a test needs; all are ended afterwards."""
    started: list[RelayProcess] = []

    def make() -> RelayProcess:
        handle = RelayProcess(tmp_path / f"relay-{len(started)}")
        started.append(handle)
        handle.start()
        return handle

    try:
        yield make
    finally:
        for handle in started:
            handle.stop(kill=True)


@pytest.fixture
def relay(relay_factory: Callable[[], RelayProcess]) -> RelayProcess:
    """A started nostr-relay on 127.0.0.1 (stop/start it to test reconnection)."""
    return relay_factory()


@pytest.fixture
def relay_url(relay: RelayProcess) -> str:
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
    while not _accepts_connections(port):
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
