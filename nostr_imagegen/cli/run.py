"""``nostr-imagegen run``: serve one request event from a file, offline, and print the answer.

    nostr-imagegen run --config engine.toml --out images/ request.json
    nostr-imagegen run --config engine.toml --out images/ --base-url https://img.example/ -
    NOSTR_IMAGEGEN_NSEC=nsec1... nostr-imagegen run --config engine.toml --out images/ req.json

Reads one signed kind 5100 request (``-``: stdin), checks it, generates the image(s) with the
engine, encodes them as ``[output]`` says (``encode_result``: no metadata in the files of an
encrypted request), writes each file into ``--out`` named by its content (``<sha256>.png``)
and prints the signed result event (kind 6100) as JSON on stdout. A link is the file's URL under
``--base-url`` (where a web server publishes ``--out``), else its ``file://`` URL.

Exit codes: 0 served; 2 invalid event or rejected job (the signed ``error`` feedback event
is printed, unless the event itself is unreadable); 3 addressed to another provider; 1 the
engine failed (an ``error`` feedback event is printed too).

The provider key comes from ``--nsec`` or, better (it stays out of the process list), the
``NOSTR_IMAGEGEN_NSEC`` environment variable; without either a fresh key is used and a
warning says so. ``--config`` is an engine TOML, or a whole service TOML (only its engine
part is used).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nostr_imagegen.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOR_US,
    NSEC_ENV,
    fail,
    keys_from,
    note,
    read_event,
)
from nostr_imagegen.errors import (
    ConfigError,
    EngineError,
    EventError,
    JobRejected,
    NostrImagegenError,
    NotForThisProvider,
    ServiceError,
)
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.imagejob.request import parse_image_job
from nostr_imagegen.imagejob.results import ImageLink, JobStatus, build_feedback, build_result
from nostr_imagegen.nostr.event import Event, UnsignedEvent
from nostr_imagegen.nostr.event import sign_event as _sign
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.kinds import IMAGE_GENERATION_KIND
from nostr_imagegen.service.config import load_engine_part

if TYPE_CHECKING:
    from PIL import Image

    from nostr_imagegen.engine.encode import EncodedImage
    from nostr_imagegen.engine_config import EngineConfig

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)

_COMMAND = "run"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="generate the image(s) for one request event file and print the result event",
        description="Serve one signed kind 5100 request offline: generate, write the images "
        "into --out, print the signed result event. Exit 0: served; 1: engine failure; "
        "2: invalid event or rejected job (error feedback printed); 3: not for this provider.",
    )
    parser.add_argument("--config", required=True, type=Path, help="engine (or service) TOML")
    parser.add_argument("--out", required=True, type=Path, help="folder for the image files")
    parser.add_argument(
        "--nsec", help=f"provider secret key (nsec or hex); prefer the {NSEC_ENV} variable"
    )
    parser.add_argument(
        "--base-url",
        help="URL under which --out is published; links are file:// URLs without it",
    )
    parser.add_argument("file", metavar="REQUEST_FILE", help="request event JSON, or - for stdin")
    parser.set_defaults(func=run)


def _provider_keys(nsec: str | None) -> Keys:
    keys = keys_from(nsec)
    if keys is None:
        keys = Keys.generate()
        note(
            _COMMAND,
            f"warning: no provider key (--nsec or {NSEC_ENV}); answering with a fresh key, "
            f"{keys.npub}",
        )
    return keys


def _print_event(template: UnsignedEvent, keys: Keys) -> None:
    sys.stdout.write(_sign(template, keys).to_json() + "\n")


def _link(encoded: EncodedImage, path: Path, base_url: str | None) -> ImageLink:
    fields: dict[str, Any] = {
        "mime": encoded.mime,
        "sha256": encoded.sha256,
        "width": encoded.width,
        "height": encoded.height,
        "size_bytes": len(encoded.data),
    }
    if base_url is not None:
        return ImageLink(url=f"{base_url.rstrip('/')}/{encoded.filename}", **fields)
    # ImageLink admits only http(s) links, the ones a client can open. A local run has
    # none: its file:// URL is built here from our own path, so skipping validation is safe.
    return ImageLink.model_construct(url=path.resolve().as_uri(), **fields)


def _fetch_input(job: ImageJob) -> Image.Image | None:
    if job.image_url is None:
        return None
    import asyncio

    from nostr_imagegen.service.fetch import fetch_image

    fetched = asyncio.run(fetch_image(job.image_url))
    return fetched.image


def _serve(job: ImageJob, args: argparse.Namespace, config: EngineConfig, keys: Keys) -> int:
    from nostr_imagegen.engine.encode import encode_result
    from nostr_imagegen.engine.generate import Engine
    from nostr_imagegen.engine.quiet import quiet_libraries

    quiet_libraries(keep_warnings=bool(getattr(args, "verbose", 0)))
    engine = Engine(config)
    engine.plan(job)  # reject before fetching or loading anything
    init_image = _fetch_input(job)
    result = engine.generate(job, init_image=init_image)
    args.out.mkdir(parents=True, exist_ok=True)
    links: list[ImageLink] = []
    for encoded in encode_result(job, result, config.output):
        path = args.out / encoded.filename
        path.write_bytes(encoded.data)
        links.append(_link(encoded, path, args.base_url))
        logger.info("wrote %s (%dx%d)", path, encoded.width, encoded.height)
    _print_event(build_result(job, links, keys=keys), keys)
    note(
        _COMMAND,
        f"{len(links)} image(s), {result.output_width}x{result.output_height}, "
        f"model {result.model}, seed {result.seed}, {result.elapsed:.1f}s",
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Serve ``args.file``; the exit code says how it went."""
    try:
        keys = _provider_keys(args.nsec)
        config = load_engine_part(args.config)
    except ConfigError as exc:
        return fail(_COMMAND, str(exc), EXIT_FAILED)
    try:
        event: Event = read_event(args.file)
    except OSError as exc:
        return fail(_COMMAND, f"cannot read {args.file}: {exc.strerror or exc}")
    except EventError as exc:
        return fail(_COMMAND, f"invalid event: {exc}")
    try:
        job = parse_image_job(event, provider=keys, accepted_kinds=(IMAGE_GENERATION_KIND,))
        return _serve(job, args, config, keys)
    except NotForThisProvider as exc:
        return fail(_COMMAND, str(exc), EXIT_NOT_FOR_US)
    except JobRejected as exc:
        _print_event(build_feedback(event, JobStatus.ERROR, message=str(exc), keys=keys), keys)
        return fail(_COMMAND, f"job rejected: {exc}")
    except (EngineError, ServiceError) as exc:
        _print_event(build_feedback(event, JobStatus.ERROR, message=str(exc), keys=keys), keys)
        return fail(_COMMAND, f"job failed: {exc}", EXIT_FAILED)
    except ConfigError as exc:  # the engine's device or upscaler cannot be set up
        return fail(_COMMAND, str(exc), EXIT_FAILED)
    except NostrImagegenError as exc:  # UnsupportedKind, EncryptionError...
        return fail(_COMMAND, str(exc))
