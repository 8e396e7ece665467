"""``nostr-imagegen keygen``: make a new key pair for a service provider (or a test customer).

Prints one JSON object to stdout::

    {"public_key": "<64 hex>", "npub": "npub1...", "secret_key": "<64 hex>", "nsec": "nsec1..."}

The secret is printed because making it is the command's purpose; store it at once (for
example in ``NOSTR_IMAGEGEN_NSEC``) and keep it out of shell history and logs.
"""

from __future__ import annotations

import argparse
import json
import sys

from nostr_imagegen.nostr.keys import Keys

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "keygen",
        help="generate a new Nostr key pair",
        description="Generate a new Nostr key pair and print it as JSON "
        "(public_key, npub, secret_key, nsec).",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print a fresh key pair; always succeeds (exit 0)."""
    keys = Keys.generate()
    document = {
        "public_key": keys.public_key,
        "npub": keys.npub,
        "secret_key": keys.secret_hex(),
        "nsec": keys.nsec(),
    }
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return 0
