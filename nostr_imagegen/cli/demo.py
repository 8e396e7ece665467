"""``nostr-imagegen demo``: the whole round trip on this machine, with no network.

    nostr-imagegen demo                      # built-in tiny smoke model, clearly labelled
    nostr-imagegen demo --config engine.toml # your model (engine or service TOML)
    nostr-imagegen demo --keep               # keep the image, ledger and relay data

What it starts, all on 127.0.0.1 and all stopped again at the end:

1. a real relay: PyPI ``nostr-relay`` (a third-party implementation) in a child process
   (``nostr_imagegen.service.localrelay``);
2. a static file server for the images folder, the DVM's image host;
3. the DVM: ``JobRunner`` with the configured model, or, when there is no configuration or
   its model cannot be loaded, a tiny random-weight model built on the spot (its pictures are
   noise: it proves the plumbing, not the art);
4. a customer who publishes the kind 5100 page's first example ("A purple ostrich watching
   the sunset", ratio 4:3, negative_prompt "broken hands, bad quality") through the relay and
   follows the feedback to the result.

It prints the request, each feedback, the result event, and where the image is (URL and
file). Exit 0 when the result arrived, 1 otherwise (2 when nostr-relay is not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from nostr_imagegen.cli.common import EXIT_INVALID, fail
from nostr_imagegen.errors import NostrImagegenError, RelayError
from nostr_imagegen.imagejob.results import JobStatus, ParsedFeedback, parse_feedback
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.kinds import FEEDBACK_KIND
from nostr_imagegen.nostr.messages import Filter

if TYPE_CHECKING:
    from nostr_imagegen.service.relay import RelayPool

__all__ = ["DEMO_PARAMS", "DEMO_PROMPT", "register", "run"]

logger = logging.getLogger(__name__)

#: The kind 5100 page's Example 1.
DEMO_PROMPT = "A purple ostrich watching the sunset"
DEMO_PARAMS: tuple[tuple[str, str], ...] = (
    ("ratio", "4:3"),
    ("negative_prompt", "broken hands, bad quality"),
)

_TINY_LABEL = (
    "BUILT-IN TINY RANDOM-WEIGHT SMOKE MODEL - its images are noise, not pictures. "
    "It shows the DVM plumbing end to end; pass --config with a real model for real images."
)
_COMMAND = "demo"
_NO_RELAY = EXIT_INVALID
#: How long to wait, after the result, for the `success` feedback sent just behind it.
_SUCCESS_WAIT_S = 2.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a relay, a DVM and a customer locally: one full round trip",
        description="Start a local relay (nostr-relay), a DVM and a customer on 127.0.0.1, "
        "submit the kind 5100 example request and print what comes back.",
    )
    parser.add_argument(
        "--config", "-c", type=Path, help="engine (or service) TOML with the model to use"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the working folder (image, ledger, relay data)"
    )
    parser.add_argument("--timeout", type=float, default=90.0, metavar="S")
    parser.add_argument("--prompt", default=DEMO_PROMPT)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="nostr-imagegen-demo-"))
    try:
        return asyncio.run(_demo(args, workdir, sys.stdout))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 1
    finally:
        if args.keep:
            sys.stdout.write(f"kept: {workdir}\n")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _say(out: TextIO) -> Callable[[str], None]:
    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    return say


async def _demo(args: argparse.Namespace, workdir: Path, out: TextIO) -> int:
    from nostr_imagegen.service.localrelay import LocalRelay

    say = _say(out)
    began = time.monotonic()
    say("nostr-imagegen demo: relay, DVM and customer on 127.0.0.1")
    try:
        relay = LocalRelay(workdir / "relay")
    except RelayError as exc:
        return fail(_COMMAND, str(exc), _NO_RELAY)
    async with AsyncExitStack() as stack:
        await asyncio.to_thread(relay.start)
        stack.callback(relay.stop)
        say(f"  relay     {relay.url}  (nostr-relay, pid {relay.pid}, data in {relay.workdir})")

        engine, model_label = await _engine(args.config, workdir, say, bool(args.verbose))
        say(f"  model     {model_label}")

        from nostr_imagegen.service.ledger import Ledger
        from nostr_imagegen.service.options import Announcement, RunnerOptions
        from nostr_imagegen.service.relay import RelayPool
        from nostr_imagegen.service.runner import JobRunner
        from nostr_imagegen.service.upload import LocalFolderHost, serve_folder

        images = workdir / "images"
        images.mkdir()
        server = stack.enter_context(serve_folder(images))
        say(f"  images    {server.url}/  (serving {images})")

        dvm_keys, customer = Keys.generate(), Keys.generate()
        say(f"  DVM       {dvm_keys.npub}")
        say(f"  customer  {customer.npub}")

        ledger = stack.enter_context(Ledger(workdir / "ledger.sqlite3"))
        dvm_pool = await stack.enter_async_context(RelayPool([relay.url], keys=dvm_keys))
        runner = JobRunner(
            keys=dvm_keys,
            pool=dvm_pool,
            engine=engine,
            hosts=[LocalFolderHost(images, server.url)],
            ledger=ledger,
            options=RunnerOptions(progress_interval_s=0.5, shutdown_timeout_s=5.0),
            announcement=Announcement(
                name="nostr-imagegen demo", about=f"Local demo DVM ({model_label})"
            ),
        )
        await runner.start()
        stack.push_async_callback(runner.stop)
        customer_pool = await stack.enter_async_context(RelayPool([relay.url], keys=customer))
        # A second connection for the `success` feedback, which comes just after the result,
        # when the customer's job client has stopped listening.
        watcher = await stack.enter_async_context(RelayPool([relay.url], keys=customer))
        for pool in (dvm_pool, customer_pool, watcher):
            await pool.wait_connected(timeout_s=10)
        return await _customer(args, customer_pool, watcher, customer, dvm_keys, images, say, began)
    return 1  # pragma: no cover - the stack above always returns


async def _engine(
    config_path: Path | None, workdir: Path, say: Callable[[str], None], verbose: bool
) -> Any:
    """The configured engine, or the tiny smoke model (with the reason) when none loads."""
    from nostr_imagegen.engine.generate import Engine
    from nostr_imagegen.engine.quiet import quiet_libraries
    from nostr_imagegen.service.config import load_engine_part

    quiet_libraries(keep_warnings=verbose)

    if config_path is not None:
        try:
            config = load_engine_part(config_path)
            engine = Engine(config)
            await asyncio.to_thread(engine.warm)
            return engine, f"{config.default_model} (from {config_path})"
        except NostrImagegenError as exc:
            say(f"  NOTE      the configured model cannot be used: {exc}")
            say("            falling back to the built-in tiny model")
    say("  building  the tiny random-weight model...")
    from nostr_imagegen.engine_config import EngineConfig
    from nostr_imagegen.imagejob.dimensions import ModelFamily
    from nostr_imagegen.testing import build_tiny_pipeline

    folder = await asyncio.to_thread(
        build_tiny_pipeline, workdir / "tiny-model", ModelFamily.SD15, seed=0
    )
    config = EngineConfig.from_mapping(
        {
            "models": {
                "tiny": {
                    "source": str(folder),
                    "family": "sd15",
                    "steps": 4,
                    "guidance_scale": 5.0,
                    "native_size": 256,
                }
            },
            "device": "cpu",
        }
    )
    engine = Engine(config)
    await asyncio.to_thread(engine.warm)
    say(f"  WARNING   {_TINY_LABEL}")
    return engine, "tiny (BUILT-IN RANDOM-WEIGHT SMOKE MODEL)"


async def _customer(
    args: argparse.Namespace,
    pool: RelayPool,
    watcher: RelayPool,
    customer: Keys,
    dvm_keys: Keys,
    images: Path,
    say: Callable[[str], None],
    began: float,
) -> int:
    from nostr_imagegen.service.client import build_request, submit_job

    request = build_request(customer, prompt=args.prompt, params=DEMO_PARAMS)
    await watcher.subscribe(
        "demo-success",
        [Filter(kinds=[FEEDBACK_KIND], authors=[dvm_keys.public_key], tags={"e": [request.id]})],
    )
    say("\nrequest (kind 5100), published by the customer:")
    say(json.dumps(request.to_dict(), indent=2, ensure_ascii=False))
    say("")

    def feedback(event: Event, parsed: ParsedFeedback) -> None:
        note = f" ({parsed.message})" if parsed.message else ""
        say(f"feedback  {parsed.raw_status}{note}")

    outcome = await submit_job(
        pool,
        request,
        keys=customer,
        timeout_s=args.timeout,
        provider=dvm_keys.public_key,
        on_feedback=feedback,
    )
    if outcome.result is None:
        say(f"\nno result: {outcome.error}")
        return 1
    success = await _success_feedback(watcher, customer)
    if success is not None:
        feedback(*success)
    say(f"\nresult (kind {outcome.result.kind}), published by the DVM:")
    say(json.dumps(outcome.result.to_dict(), indent=2, ensure_ascii=False))
    say("\nthe image:")
    for url in outcome.urls:
        name = Path(urlsplit(url).path).name
        say(f"  url   {url}")
        say(f"  file  {images / name}" + ("" if args.keep else "  (deleted on exit; --keep)"))
    say(
        f"\nround trip: {outcome.elapsed_s:.2f} s from publishing the request to the result "
        f"({time.monotonic() - began:.1f} s in all, start-up included)"
    )
    return 0


async def _success_feedback(
    watcher: RelayPool, customer: Keys
) -> tuple[Event, ParsedFeedback] | None:
    """The DVM's `success` feedback from ``watcher`` (subscribed to the job's feedback), which
    it sends just behind the result; None when it is not there within ``_SUCCESS_WAIT_S``."""
    try:
        async with asyncio.timeout(_SUCCESS_WAIT_S):
            async for _relay, event in watcher.events():
                try:
                    parsed = parse_feedback(event, keys=customer)
                except NostrImagegenError:
                    continue
                if parsed.status is JobStatus.SUCCESS:
                    return event, parsed
    except TimeoutError:
        logger.info("no success feedback within %.0f s of the result", _SUCCESS_WAIT_S)
    return None
