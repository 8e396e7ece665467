"""What the subcommands share: exit codes, diagnostics, keys from ``--nsec`` or the
environment, reading a request event file.

Diagnostics go to stderr as one line each, data stays on stdout::

    nostr-imagegen parse: invalid event: event JSON is larger than 524288 bytes
"""

from __future__ import annotations

import os
import sys
from typing import Final

from nostr_imagegen.errors import ConfigError, EventError, KeyFormatError
from nostr_imagegen.nostr.event import MAX_EVENT_JSON_BYTES, Event, parse_event
from nostr_imagegen.nostr.keys import Keys

__all__ = [
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_NOT_FOR_US",
    "EXIT_TIMEOUT",
    "NSEC_ENV",
    "fail",
    "keys_from",
    "note",
    "read_event",
]

#: Exit codes (0 is success): an unexpected failure or an engine that failed...
EXIT_FAILED: Final = 1
#: ...invalid input, a rejected job, or a provider's `error` answer...
EXIT_INVALID: Final = 2
#: ...a job addressed to another provider...
EXIT_NOT_FOR_US: Final = 3
#: ...no answer before the timeout.
EXIT_TIMEOUT: Final = 4

#: Environment variable holding the provider's secret key (nsec or 64 hex).
NSEC_ENV: Final = "NOSTR_IMAGEGEN_NSEC"

_PROGRAM = "nostr-imagegen"


def note(command: str, message: str) -> None:
    """One diagnostic line on stderr: ``nostr-imagegen <command>: <message>``."""
    sys.stderr.write(f"{_PROGRAM} {command}: {message}\n")


def fail(command: str, message: str, code: int = EXIT_INVALID) -> int:
    """Say why ``command`` stops (on stderr) and give back its exit ``code``."""
    note(command, message)
    return code


def keys_from(nsec: str | None, *, env: str = NSEC_ENV, role: str = "provider") -> Keys | None:
    """The key given with ``--nsec``, else in the environment variable ``env`` (better: it
    stays out of the process list); None when neither is set (a blank variable is unset).

    Raises ``ConfigError`` for a value that is not an nsec or 64 hex; the message names
    where the key came from, never the key.
    """
    secret = nsec or os.environ.get(env, "").strip()
    if not secret:
        return None
    try:
        return Keys.parse(secret)
    except KeyFormatError:
        # The parser's message may quote part of the key: say only what was wrong.
        raise ConfigError(f"the {role} key (--nsec or {env}) is not an nsec or 64 hex") from None


def read_event(file: str) -> Event:
    """The event in the JSON file ``file`` (``-``: stdin), read no further than
    ``MAX_EVENT_JSON_BYTES`` + 1. Raises ``OSError`` when it cannot be read, and
    ``EventError`` when it is too large or not a valid signed event."""
    if file == "-":
        data = sys.stdin.buffer.read(MAX_EVENT_JSON_BYTES + 1)
    else:
        with open(file, "rb") as stream:
            data = stream.read(MAX_EVENT_JSON_BYTES + 1)
    if len(data) > MAX_EVENT_JSON_BYTES:
        raise EventError(f"event JSON is larger than {MAX_EVENT_JSON_BYTES} bytes")
    return parse_event(data)
