"""``nostr-imagegen parse``: show how a signed request event would be read, without serving it.

    nostr-imagegen parse request.json                 # or - for stdin
    NOSTR_IMAGEGEN_NSEC=nsec1... nostr-imagegen parse request.json   # decrypt, check `p`
    nostr-imagegen parse --kind 5050 old-client-request.json

Prints the parsed job as JSON on stdout (the request event itself is left out; ``id`` is its
id) and exits 0. Exits 2 with the reason on stderr when the event is invalid or the job would
be rejected (or its kind is not accepted), and 3 when the job is addressed to another
provider. The provider key (``--nsec``, or better the environment variable, which stays out
of the process list) is only used to decrypt and to check `p` tags; it is never printed.
"""

from __future__ import annotations

import argparse
import json
import sys

from nostr_imagegen.cli.common import EXIT_NOT_FOR_US, NSEC_ENV, fail, keys_from, read_event
from nostr_imagegen.errors import (
    ConfigError,
    EventError,
    JobRejected,
    NostrImagegenError,
    NotForThisProvider,
)
from nostr_imagegen.imagejob.request import parse_image_job
from nostr_imagegen.nostr.kinds import IMAGE_GENERATION_KIND, REQUEST_KINDS, is_request_kind

__all__ = ["register", "run"]

_COMMAND = "parse"


def _request_kind(text: str) -> int:
    try:
        kind = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a kind number") from None
    if not is_request_kind(kind):
        raise argparse.ArgumentTypeError(
            f"{kind} is not a job request kind ({REQUEST_KINDS.start} to {REQUEST_KINDS.stop - 1})"
        )
    return kind


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "parse",
        help="parse a kind 5100 request event and print the job as JSON",
        description="Read one signed job request event (JSON) and print the parsed image job. "
        "Exit 0: parsed; 2: invalid event or rejected job; 3: addressed to another provider.",
    )
    parser.add_argument(
        "--nsec",
        help=f"provider secret key (nsec or hex) to decrypt requests and check `p` tags; "
        f"prefer the {NSEC_ENV} environment variable",
    )
    parser.add_argument(
        "--kind",
        dest="kinds",
        action="append",
        type=_request_kind,
        default=[],
        metavar="KIND",
        help=f"also accept this request kind besides {IMAGE_GENERATION_KIND} (repeatable), "
        "e.g. 5050 for clients following the first draft",
    )
    parser.add_argument("file", metavar="FILE", help="request event JSON file, or - for stdin")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Parse ``args.file`` and print the job; the exit code says how it went."""
    try:
        provider = keys_from(args.nsec)
    except ConfigError as exc:
        return fail(_COMMAND, str(exc))
    try:
        event = read_event(args.file)
        job = parse_image_job(
            event, provider=provider, accepted_kinds=(IMAGE_GENERATION_KIND, *args.kinds)
        )
    except OSError as exc:
        return fail(_COMMAND, f"cannot read {args.file}: {exc.strerror or exc}")
    except EventError as exc:
        return fail(_COMMAND, f"invalid event: {exc}")
    except JobRejected as exc:
        return fail(_COMMAND, f"job rejected: {exc}")
    except NotForThisProvider as exc:
        return fail(_COMMAND, str(exc), EXIT_NOT_FOR_US)
    except NostrImagegenError as exc:  # UnsupportedKind, and anything else we raise
        return fail(_COMMAND, str(exc))
    document = job.model_dump(mode="json", exclude={"request"})
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return 0
