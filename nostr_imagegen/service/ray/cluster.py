"""Connecting the front to Ray: a local cluster on 127.0.0.1, or an existing one.

    started = start_or_connect(config.engine.ray)   # idempotent; ConfigError if it cannot
    ...
    disconnect()                                     # ray.shutdown(), when connected

``[engine.ray] address`` absent: a head node starts in this process's session, every Ray
process bound to 127.0.0.1 (nothing is reachable from the network), no dashboard. An
address (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``): the running cluster there.
Usage statistics are off either way: nothing phones home.

Ray 2.60 authenticates its processes with a token. Give it as a file, never in the
configuration: ``RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=/etc/nostr-imagegen/ray-token``
(the same file on every machine of the cluster); without it Ray writes one to
``~/.ray/auth_token``. The token is never read or logged here.

Ray reads its environment when it is imported, not when it connects: set the variables
before the process starts (the service's unit file, a test module's top), and let this
module be the first to import Ray. The loopback setting is also applied to an already
imported Ray (below), since a local cluster must never listen beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator

from nostr_imagegen.errors import ConfigError
from nostr_imagegen.service.scaling import RaySection

__all__ = ["disconnect", "start_or_connect"]

logger = logging.getLogger(__name__)

#: Environment Ray reads when it starts: no usage statistics, ever.
_ALWAYS = {"RAY_USAGE_STATS_ENABLED": "0"}
#: For a local cluster: without this Ray swaps 127.0.0.1 for the machine's address and
#: binds its GCS, raylet and workers on every interface.
_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
#: How long the head's port may take to accept a connection.
_REACH_TIMEOUT_S = 5.0


def start_or_connect(
    section: RaySection, *, temp_dir: str | None = None, num_cpus: int | None = None
) -> bool:
    """Connect this process to Ray as ``section`` says (see the module doc). True when this
    call connected, False when it already was (then nothing changes). ``temp_dir`` is Ray's
    session folder for a local cluster (keep it short: unix socket paths are limited to
    about 107 characters); ``num_cpus`` caps a local cluster's CPUs (default: all).

    Raises ``ConfigError`` when Ray is not installed or the cluster cannot be reached."""
    os.environ.update(_ALWAYS)
    if section.address is None:
        os.environ.update(_LOOPBACK)
    try:
        import ray
        from ray._private import ray_constants
    except ImportError as exc:
        raise ConfigError(
            '[engine] backend = "ray" needs Ray: install the ray extra '
            "(pip install 'nostr-imagegen[ray]')"
        ) from exc
    if ray.is_initialized():
        return False
    with _python_signal_handlers_kept():
        try:
            if section.address is None:
                # Read by Ray at its import: an earlier import saw another value.
                ray_constants.ENABLE_RAY_CLUSTER = False
                ray.init(
                    _node_ip_address="127.0.0.1",
                    include_dashboard=False,
                    namespace=section.namespace,
                    num_cpus=num_cpus,
                    _temp_dir=temp_dir,
                    log_to_driver=True,
                    configure_logging=False,
                )
                logger.info("started a local Ray cluster on 127.0.0.1")
            else:
                _check_reachable(section.address)
                ray.init(
                    address=section.address,
                    namespace=section.namespace,
                    configure_logging=False,
                )
                logger.info("connected to the Ray cluster at %s", section.address)
        except ConfigError:
            raise
        except Exception as exc:
            ray.shutdown()  # ends what a half-done start left running
            where = section.address or "a local cluster on 127.0.0.1"
            raise ConfigError(
                f"[engine.ray]: cannot connect to {where} ({type(exc).__name__}: {exc})"
            ) from exc
    return True


@contextlib.contextmanager
def _python_signal_handlers_kept() -> Iterator[None]:
    """``ray.init`` installs the core worker's own SIGTERM/SIGINT handlers, which end the
    process at once (printing a stack): a front's graceful stop (finish the running job,
    keep the queue in the ledger) would never run. Put the handlers this process had back."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; nothing to keep elsewhere
        return
    kept = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in kept.items():
            if handler is not None:
                signal.signal(signum, handler)


def _check_reachable(address: str) -> None:
    """A ``HOST:PORT`` where nothing listens fails now, not after Ray's minutes of retries."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto", "ray://...": Ray resolves them itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_REACH_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(
            f"[engine.ray]: nothing answers at address {address!r} ({exc}); is the head "
            "started (ray start --head) and the port open to this machine?"
        ) from exc


def disconnect() -> None:
    """Leave Ray (a local cluster ends with it); nothing when not connected."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
