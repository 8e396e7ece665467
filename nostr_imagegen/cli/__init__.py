"""The ``nostr-imagegen`` command line: one console script, one module per subcommand.

Data goes to stdout, diagnostics to stderr. Exit codes: 0 success, 1 unexpected failure,
2 invalid input or rejected job, 3 job addressed to another provider (``parse``, ``run``),
4 no result before the timeout (``submit``).

Each subcommand module defines ``register(subparsers)`` which adds its parser and sets
``func`` to a callable ``(argparse.Namespace) -> int``. What they share (the exit codes,
diagnostics, keys from ``--nsec`` or the environment, reading an event file) is in
``nostr_imagegen.cli.common``; the model libraries are quieted with the engine's
``quiet_libraries``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: Subcommand modules under ``nostr_imagegen.cli``, in ``--help`` order.
_COMMANDS = ("keygen", "parse", "run", "serve", "submit", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nostr-imagegen",
        description="Run AI image generation as a Nostr Data Vending Machine (NIP-90 kind 5100).",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more diagnostics on stderr"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"nostr_imagegen.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"nostr_imagegen.cli.{name}":
                raise
            continue  # subcommand not built yet in this checkout
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
