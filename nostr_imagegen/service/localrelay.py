"""A real relay on 127.0.0.1 for demos and tests: PyPI ``nostr-relay`` in a child process.

    >>> with LocalRelay(Path("/tmp/relay")) as relay:       # free port, own SQLite file
    ...     relay.url                                       # 'ws://127.0.0.1:43117'
    ...     relay.stop(kill=True); relay.start()            # crash and restart, same data
    ...     relay.restart()                                 # graceful stop, start again

``nostr-relay`` (a third-party Python relay with SQLite storage) is started as
``nostr-relay -c <config> serve --use-uvicorn`` bound to 127.0.0.1 only. Its quirks, worth
knowing: it answers a rejected event with an empty id, reports duplicates as
``OK false "duplicate: ..."``, and refuses events older than a year or an hour ahead.
Install it with ``pip install nostr-relay`` (or ``pip install "nostr-imagegen[dev]"``).

The demo, the examples, the benchmarks and the integration tests' ``relay`` fixtures all use
this one class. No relay outlives the process that started it: one its owner never stopped
(an exception path, a forgotten ``stop()``) is ended at interpreter exit (``atexit``), and a
watcher beside the relay ends it when this process dies in any other way (SIGKILL, a
``subprocess`` timeout): see ``_LAUNCHER``.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from nostr_imagegen.errors import RelayError

__all__ = ["INSTALL_HINT", "LocalRelay", "accepts_connections", "find_nostr_relay", "free_port"]

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "the local relay needs the nostr-relay package: pip install nostr-relay "
    '(or pip install "nostr-imagegen[dev]")'
)

_CONFIG = """\
DEBUG: false
relay_name: nostr-imagegen local relay
relay_description: started by nostr_imagegen.service.localrelay
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Run as ``python -c _LAUNCHER <nostr-relay> <args...>``. It forks a watcher, then becomes the
# relay (exec keeps the pid, so our signals reach nostr-relay itself). The watcher blocks on
# its stdin, a pipe only the LocalRelay writes to: EOF comes when stop() closes it or when we
# die, however hard. Then, if the relay is still its parent (not already gone), it sends it
# SIGTERM. The relay runs in a session of its own so that a Ctrl-C reaches us, not it, first.
_LAUNCHER = """\
import os, signal, sys
relay = os.getpid()
if os.fork() == 0:
    try:
        while os.read(0, 4096):
            pass
        if os.getppid() == relay:
            os.kill(relay, signal.SIGTERM)
    finally:
        os._exit(0)
os.execv(sys.argv[1], sys.argv[1:])
"""


def find_nostr_relay() -> str | None:
    """Path of the ``nostr-relay`` executable (beside this Python first), or None."""
    beside = Path(sys.executable).with_name("nostr-relay")
    if beside.exists():
        return str(beside)
    return shutil.which("nostr-relay")


def accepts_connections(port: int) -> bool:
    """Whether something on ``127.0.0.1:port`` accepts a TCP connection right now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# Relay processes started and not yet stopped, by pid: ended at interpreter exit.
_live: dict[int, subprocess.Popen[bytes]] = {}
_live_lock = threading.Lock()


@atexit.register
def _end_leftovers(timeout_s: float = 3.0) -> None:
    """SIGTERM every relay still running, SIGKILL those that outlast ``timeout_s``."""
    with _live_lock:
        leftovers = list(_live.values())
        _live.clear()
    for process in leftovers:
        if process.poll() is None:
            logger.warning("ending nostr-relay pid %d left running", process.pid)
            process.terminate()
    for process in leftovers:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LocalRelay:
    """``nostr-relay`` on ``127.0.0.1:port`` with its data in ``workdir``; restartable.

    ``start()`` blocks until the relay accepts connections (raises ``RelayError`` with the
    log tail if it does not); ``stop()`` sends SIGTERM, ``stop(kill=True)`` SIGKILL (a crash);
    ``start()`` after either serves the same port and database again, and ``restart()`` is
    ``stop()`` then ``start()``. All block for up to a few seconds: from async code call them
    via ``asyncio.to_thread``.
    """

    def __init__(
        self, workdir: Path | str, *, port: int | None = None, executable: str | None = None
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port if port is not None else free_port()
        self.executable = executable or find_nostr_relay()
        if self.executable is None:
            raise RelayError(INSTALL_HINT)
        self.db_path = self.workdir / "relay.sqlite3"
        self.config_path = self.workdir / "config.yaml"
        self.log_path = self.workdir / "relay.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(_CONFIG.format(db=self.db_path, port=self.port))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _command(self) -> list[str]:
        assert self.executable is not None
        return [self.executable, "-c", str(self.config_path), "serve", "--use-uvicorn"]

    def start(self, timeout_s: float = 60.0) -> LocalRelay:
        """Start the relay and wait until it accepts connections; returns ``self``."""
        if self.running:
            return self
        self.stop()  # forget a process that ended on its own
        if accepts_connections(self.port):
            raise RelayError(f"port {self.port} on 127.0.0.1 is already in use")
        with self.log_path.open("ab") as log:
            try:
                self._process = subprocess.Popen(  # noqa: S603 - our own executable, arguments
                    [sys.executable, "-I", "-S", "-c", _LAUNCHER, *self._command()],
                    cwd=self.workdir,
                    stdin=subprocess.PIPE,  # the watcher's lifeline; never written to
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            except OSError as exc:
                raise RelayError(f"cannot run {self.executable}: {exc}") from exc
        with _live_lock:
            _live[self._process.pid] = self._process
        deadline = time.monotonic() + timeout_s
        while not accepts_connections(self.port):
            if self._process.poll() is not None:
                self.stop()  # reaped already; this forgets it
                raise RelayError(f"nostr-relay exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop(kill=True)
                raise RelayError(
                    f"nostr-relay did not start in {timeout_s:g} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        return self

    def stop(self, *, kill: bool = False, timeout_s: float = 10.0) -> None:
        """Stop the relay (SIGTERM, or SIGKILL with ``kill``) and wait for the port to free."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.poll() is not None:
                return
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        finally:
            with _live_lock:
                _live.pop(process.pid, None)
            if process.stdin is not None:
                process.stdin.close()  # its watcher sees EOF, finds the relay gone, and exits
        # Wait until the port is free again so that a restart can bind it.
        deadline = time.monotonic() + timeout_s
        while accepts_connections(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self, timeout_s: float = 60.0) -> LocalRelay:
        """``stop()`` (graceful) then ``start()``: same port, same database."""
        self.stop()
        return self.start(timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the relay's log (for error messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> LocalRelay:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalRelay({self.url!r}, running={self.running})"
