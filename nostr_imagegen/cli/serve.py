"""``nostr-imagegen serve --config dvm.toml``: run the DVM until SIGINT or SIGTERM.

    NOSTR_IMAGEGEN_NSEC=nsec1... nostr-imagegen serve --config dvm.toml

The secret key comes from the environment variable named in ``[identity]`` (default
``NOSTR_IMAGEGEN_NSEC``) or the key file it names; never from the TOML or the command line.
On SIGINT/SIGTERM the runner stops taking jobs, lets the running one finish (up to
``[service] shutdown_timeout_s``), and exits 0; unfinished jobs stay in the ledger and are
resumed by the next start. Exit 2 for an invalid configuration or key, 1 for a failure
while running. Diagnostics go to stderr; ``-v`` for more; ``--log-format json`` writes them
as one JSON object a line, with the job id (for log shippers; ``service.logging_json``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from nostr_imagegen.cli.common import EXIT_FAILED, fail
from nostr_imagegen.errors import ConfigError, NostrImagegenError
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.config import ServiceConfig, load_keys, load_service_config

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)

_COMMAND = "serve"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the image generation DVM",
        description="Run the DVM described by a TOML configuration until SIGINT/SIGTERM.",
    )
    parser.add_argument(
        "--config", "-c", type=Path, required=True, help="the DVM's TOML configuration"
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per log line, with the job id (for log shippers)",
    )
    parser.set_defaults(func=run)


def _use_json_logs() -> None:
    from nostr_imagegen.service.logging_json import JsonFormatter

    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())


def run(args: argparse.Namespace) -> int:
    if getattr(args, "log_format", "text") == "json":
        _use_json_logs()
    try:
        config = load_service_config(args.config)
        keys = load_keys(config.identity)
    except ConfigError as exc:
        return fail(_COMMAND, str(exc))
    try:
        asyncio.run(_serve(config, keys))
    except ConfigError as exc:
        return fail(_COMMAND, str(exc))
    except NostrImagegenError as exc:
        return fail(_COMMAND, str(exc), EXIT_FAILED)
    return 0


async def _serve(config: ServiceConfig, keys: Keys) -> None:
    from nostr_imagegen.service.app import serve  # websockets, httpx, torch: only when serving

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def ready(runner: object) -> None:
        sys.stderr.write(
            f"serving kinds {', '.join(map(str, config.service.accepted_kinds))} as "
            f"{keys.npub} on {', '.join(config.service.relays)}\n"
        )
        sys.stderr.flush()

    runner = await serve(config, keys=keys, stop=stop, on_ready=ready)
    logger.info("stopped: %s", runner.stats)
    sys.stderr.write("stopped\n")
