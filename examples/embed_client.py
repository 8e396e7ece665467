"""The customer side in your own program: several image jobs in flight at once.

``JobClient`` keeps one subscription (the answers addressed to your key) and routes each
feedback and result to the job it belongs to; ``build_request`` makes the kind 5100 event,
in the clear or with its params encrypted to the provider.

    # against a DVM you know:
    .venv/bin/python examples/embed_client.py --relay wss://relay.example --provider npub1...
    # offline: starts a local relay (PyPI nostr-relay) and a tiny-model DVM first
    .venv/bin/python examples/embed_client.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from nostr_imagegen import EncryptionScheme, Event, Keys, ParsedFeedback
from nostr_imagegen.service import JobClient, RelayPool, build_request


async def customer(relay: str, provider: str) -> None:
    keys = Keys.generate()
    jobs = {
        "plain": build_request(
            keys, prompt="A purple ostrich watching the sunset", params=[("ratio", "4:3")]
        ),
        "encrypted": build_request(
            keys,
            prompt="a secret ostrich",
            params=[("size", "64x64")],
            provider=provider,
            encryption=EncryptionScheme.NIP44,
        ),
        "refused": build_request(keys, prompt="x", params=[("model", "no-such-model")]),
    }

    def progress(name: str) -> Callable[[Event, ParsedFeedback], None]:
        def show(event: Event, feedback: ParsedFeedback) -> None:
            print(f"  {name:9} {feedback.raw_status}: {feedback.message or ''}")

        return show

    async with RelayPool([relay], keys=keys) as pool:
        await pool.wait_connected(timeout_s=10)
        async with JobClient(pool, keys) as client:
            outcomes = await asyncio.gather(
                *(
                    client.submit(
                        request, provider=provider, timeout_s=60, on_feedback=progress(name)
                    )
                    for name, request in jobs.items()
                )
            )
    for name, outcome in zip(jobs, outcomes, strict=True):
        if outcome.ok:
            print(f"{name:9} -> {', '.join(outcome.urls)} ({outcome.elapsed_s:.2f} s)")
        else:
            print(f"{name:9} -> no image: {outcome.error}")


@contextlib.asynccontextmanager
async def local_dvm() -> AsyncIterator[tuple[str, str]]:
    """A local relay and a tiny-model DVM (its pictures are noise), for running offline."""
    from nostr_imagegen.engine import Engine, EngineConfig
    from nostr_imagegen.service import JobRunner, Ledger, LocalFolderHost, LocalRelay, serve_folder
    from nostr_imagegen.testing import build_tiny_pipeline

    with tempfile.TemporaryDirectory(prefix="embed-client-") as folder:
        root = Path(folder)
        model = build_tiny_pipeline(root / "tiny", seed=0)
        engine = Engine(
            EngineConfig.from_mapping(
                {
                    "models": {
                        "tiny": {"source": str(model), "family": "sd15", "steps": 2,
                                 "native_size": 64}
                    },
                    "device": "cpu",
                }
            )
        )  # fmt: skip
        dvm = Keys.generate()
        (root / "images").mkdir()
        with (
            LocalRelay(root / "relay") as relay,
            serve_folder(root / "images") as server,
            Ledger(root / "ledger.sqlite3") as ledger,
        ):
            async with RelayPool([relay.url], keys=dvm) as pool:
                runner = JobRunner(
                    keys=dvm,
                    pool=pool,
                    engine=engine,
                    hosts=[LocalFolderHost(root / "images", server.url)],
                    ledger=ledger,
                )
                async with runner:
                    await pool.wait_connected(timeout_s=10)
                    yield relay.url, dvm.public_key


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relay")
    parser.add_argument("--provider", help="the DVM's npub or hex key")
    args = parser.parse_args()
    if args.relay and args.provider:
        await customer(args.relay, args.provider)
        return
    print("no --relay/--provider: starting a local relay and a tiny-model DVM")
    async with local_dvm() as (relay, provider):
        await customer(relay, provider)


if __name__ == "__main__":
    asyncio.run(main())
