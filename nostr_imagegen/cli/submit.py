"""``nostr-imagegen submit``: the customer side. Publish a kind 5100 request, follow it.

    nostr-imagegen submit --relay wss://relay.example --prompt "A purple ostrich" \\
        --param ratio 4:3 --param negative_prompt "broken hands" [--image URL] \\
        [--provider npub1...] [--encrypt [--scheme nip04]] [--timeout 120]

stdout carries data, one JSON object per line: each feedback as it arrives, then the
result last::

    {"type": "feedback", "status": "processing", "message": "queued: position 1",
     "amount_msats": null, "bolt11": null, "provider": "<hex>", "event": {...}}
    {"type": "result", "urls": ["https://..."], "provider": "<hex>", "event": {...}}

A `payment-required` feedback is shown on stderr with its amount, its invoice and a
terminal QR code of it. ``--pay-lnbits URL`` pays it from an LNbits wallet whose admin key
is read from the environment variable ``LNBITS_ADMIN_KEY`` (never a flag: it would show in
the process list), then waits for the result; ``--max-msats N`` refuses to pay more than N
(the job then ends with exit code 2, unpaid). ``--pay-nwc`` pays over Nostr Wallet Connect
instead, the ``nostr+walletconnect://`` URI read from ``NOSTR_IMAGEGEN_NWC_URI`` or from
the file ``--nwc-uri-file`` names::

    LNBITS_ADMIN_KEY=... nostr-imagegen submit -r wss://relay.example -p "An ostrich" \
        --pay-lnbits https://lnbits.example --max-msats 50000

stderr carries readable progress lines. Exit codes: 0 a result arrived; 2 invalid arguments
or the provider answered `error` (its reason on stderr, and in the last JSON line as
``{"type": "error", "reason": ...}``); 4 no result before ``--timeout``; 1 no relay took
the request, or another failure.

The customer key is fresh for every run unless given: the environment variable
``NOSTR_IMAGEGEN_CUSTOMER_NSEC`` (preferred: it stays out of the process list) or
``--nsec``. ``--encrypt`` needs ``--provider``: the inputs and params then travel NIP-44
encrypted (``--scheme nip04`` for older providers), and so do the answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from nostr_imagegen.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_TIMEOUT, fail, keys_from
from nostr_imagegen.errors import NostrImagegenError, RelayError
from nostr_imagegen.imagejob.results import JobStatus, ParsedFeedback
from nostr_imagegen.nostr.encryption import EncryptionScheme
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.nostr.keys import Keys, normalize_public_key
from nostr_imagegen.nostr.kinds import IMAGE_GENERATION_KIND

__all__ = [
    "CUSTOMER_NSEC_ENV",
    "LNBITS_ADMIN_KEY_ENV",
    "NWC_URI_ENV",
    "register",
    "run",
    "terminal_qr",
]

#: Environment variable holding the customer's secret key (nsec or 64 hex).
CUSTOMER_NSEC_ENV = "NOSTR_IMAGEGEN_CUSTOMER_NSEC"
#: Environment variable holding the paying LNbits wallet's admin key (``--pay-lnbits``).
LNBITS_ADMIN_KEY_ENV = "LNBITS_ADMIN_KEY"
#: Environment variable holding a ``nostr+walletconnect://`` URI (``--pay-nwc``).
NWC_URI_ENV = "NOSTR_IMAGEGEN_NWC_URI"

_COMMAND = "submit"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="publish an image generation request and wait for the result",
        description="Publish a signed kind 5100 request, print the feedback and the result.",
    )
    parser.add_argument(
        "--relay", "-r", action="append", required=True, metavar="URL", help="repeatable"
    )
    parser.add_argument("--prompt", "-p", required=True)
    parser.add_argument("--image", metavar="URL", help="an image to alter (img2img)")
    parser.add_argument(
        "--param",
        nargs="+",
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="a job param, repeatable: --param ratio 4:3 --param lora pixel-art 0.8",
    )
    parser.add_argument("--provider", metavar="NPUB", help="address one provider (npub or hex)")
    parser.add_argument(
        "--encrypt", action="store_true", help="encrypt inputs and params to --provider"
    )
    parser.add_argument("--scheme", choices=[s.value for s in EncryptionScheme], default="nip44")
    parser.add_argument("--output", metavar="MIME", help="image/png, image/jpeg or image/webp")
    parser.add_argument("--bid", type=int, metavar="MSATS", help="the most you will pay")
    parser.add_argument(
        "--kind",
        type=int,
        default=IMAGE_GENERATION_KIND,
        help=f"request kind (default {IMAGE_GENERATION_KIND})",
    )
    parser.add_argument(
        "--reply-relay",
        action="append",
        default=[],
        metavar="URL",
        help="ask providers to answer on this relay too (the request's relays tag)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S")
    parser.add_argument(
        "--keep-waiting",
        action="store_true",
        help="do not stop at an error feedback (another provider may still answer)",
    )
    parser.add_argument(
        "--pay-lnbits",
        metavar="URL",
        help=f"pay invoices from this LNbits wallet (admin key in ${LNBITS_ADMIN_KEY_ENV})",
    )
    parser.add_argument(
        "--pay-nwc",
        action="store_true",
        help=f"pay invoices over Nostr Wallet Connect (URI in ${NWC_URI_ENV} or --nwc-uri-file)",
    )
    parser.add_argument("--nwc-uri-file", type=Path, metavar="PATH", help="the NWC URI, one line")
    parser.add_argument(
        "--max-msats", type=int, metavar="MSATS", help="never pay an invoice above this"
    )
    parser.add_argument(
        "--nsec", help=f"customer key (prefer the {CUSTOMER_NSEC_ENV} environment variable)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        keys, params, provider = _validate(args)
    except (ValueError, NostrImagegenError) as exc:
        return fail(_COMMAND, str(exc))
    try:
        return asyncio.run(_submit(args, keys, params, provider, sys.stdout, sys.stderr))
    except RelayError as exc:
        return fail(_COMMAND, str(exc), EXIT_FAILED)


def _validate(args: argparse.Namespace) -> tuple[Keys, list[tuple[str, ...]], str | None]:
    keys = keys_from(args.nsec, env=CUSTOMER_NSEC_ENV, role="customer") or Keys.generate()
    params: list[tuple[str, ...]] = []
    for param in args.param:
        if len(param) < 2:
            raise ValueError(f"--param needs a key and a value, got {param!r}")
        params.append(tuple(param))
    provider = normalize_public_key(args.provider) if args.provider else None
    if args.encrypt and provider is None:
        raise ValueError("--encrypt needs --provider (the key the params are encrypted to)")
    if args.timeout <= 0:
        raise ValueError("--timeout must be positive")
    if args.max_msats is not None and args.max_msats < 0:
        raise ValueError("--max-msats must not be negative")
    if args.pay_lnbits is not None:
        if not args.pay_lnbits.startswith(("http://", "https://")):
            raise ValueError("--pay-lnbits needs the http(s) URL of the LNbits instance")
        if not os.environ.get(LNBITS_ADMIN_KEY_ENV, "").strip():
            raise ValueError(
                f"--pay-lnbits reads the wallet's admin key from ${LNBITS_ADMIN_KEY_ENV}"
            )
    if args.pay_nwc and args.pay_lnbits is not None:
        raise ValueError("pay with --pay-lnbits or --pay-nwc, not both")
    if args.pay_nwc:
        args.nwc_uri = _nwc_uri(args.nwc_uri_file)
    return keys, params, provider


async def _submit(
    args: argparse.Namespace,
    keys: Keys,
    params: list[tuple[str, ...]],
    provider: str | None,
    out: TextIO,
    err: TextIO,
) -> int:
    from nostr_imagegen.service.client import Payer, build_request, submit_job
    from nostr_imagegen.service.payment.lnbits import LnbitsPayer
    from nostr_imagegen.service.payment.nwc import NwcPayer
    from nostr_imagegen.service.relay import RelayPool

    request = build_request(
        keys,
        prompt=args.prompt,
        image_url=args.image,
        params=params,
        provider=provider,
        encryption=EncryptionScheme(args.scheme) if args.encrypt else None,
        relays=args.reply_relay,
        output=args.output,
        bid_msats=args.bid,
        kind=args.kind,
    )
    err.write(f"customer {keys.npub}\nrequest {request.id}\n")
    err.flush()

    def feedback(event: Event, parsed: ParsedFeedback) -> None:
        _line(
            out,
            {
                "type": "feedback",
                "status": parsed.raw_status,
                "message": parsed.message,
                "amount_msats": parsed.amount_msats,
                "bolt11": parsed.bolt11,
                "provider": event.pubkey,
                "event": event.to_dict(),
            },
        )
        note = f" ({parsed.message})" if parsed.message else ""
        amount = f" [{parsed.amount_msats} msats]" if parsed.amount_msats is not None else ""
        err.write(f"feedback from {event.pubkey[:12]}: {parsed.raw_status}{note}{amount}\n")
        if parsed.status is JobStatus.PAYMENT_REQUIRED and parsed.bolt11:
            err.write(f"invoice: {parsed.bolt11}\n{terminal_qr(parsed.bolt11)}\n")
        err.flush()

    payer: Payer | None = None
    lnbits: LnbitsPayer | None = None
    if args.pay_lnbits is not None:
        lnbits = LnbitsPayer(args.pay_lnbits, os.environ[LNBITS_ADMIN_KEY_ENV].strip())
        wallet = lnbits

        async def pay_lnbits(bolt11: str, max_msats: int | None) -> None:
            payment_hash = await wallet(bolt11, max_msats)
            err.write(f"paid the invoice from {wallet.url} (payment hash {payment_hash})\n")
            err.flush()

        payer = pay_lnbits
    nwc: NwcPayer | None = None
    if args.pay_nwc:
        nwc = NwcPayer(args.nwc_uri)
        nwc_wallet = nwc

        async def pay_nwc(bolt11: str, max_msats: int | None) -> None:
            payment_hash = await nwc_wallet(bolt11, max_msats)
            err.write(f"paid the invoice over NWC (payment hash {payment_hash})\n")
            err.flush()

        payer = pay_nwc

    try:
        async with RelayPool(args.relay, keys=keys) as pool:
            await pool.wait_connected(timeout_s=min(10.0, args.timeout))
            outcome = await submit_job(
                pool,
                request,
                keys=keys,
                timeout_s=args.timeout,
                provider=provider,
                on_feedback=feedback,
                stop_on_error=not args.keep_waiting,
                publish_timeout_s=min(10.0, args.timeout),
                payer=payer,
                max_msats=args.max_msats,
            )
    finally:
        if lnbits is not None:
            await lnbits.aclose()
        if nwc is not None:
            await nwc.aclose()
    if outcome.result is not None:
        _line(
            out,
            {
                "type": "result",
                "urls": list(outcome.urls),
                "provider": outcome.result.pubkey,
                "event": outcome.result.to_dict(),
            },
        )
        err.write("result: " + " ".join(outcome.urls) + "\n")
        return 0
    reason = outcome.error or "no result"
    _line(out, {"type": "error", "reason": reason})
    err.write(f"nostr-imagegen submit: {reason}\n")
    return EXIT_TIMEOUT if outcome.timed_out else EXIT_INVALID


def _nwc_uri(path: Path | None) -> str:
    """The NWC URI from the environment or the file (never from a flag's value)."""
    from nostr_imagegen.service.payment.settings import read_secret

    try:
        return read_secret(file=path, env=NWC_URI_ENV, what="NWC connection URI")
    except NostrImagegenError as exc:
        raise ValueError(str(exc)) from None


def terminal_qr(text: str) -> str:
    """``text`` as a QR code drawn with block characters (wallets scan it off the screen)."""
    import io

    import segno  # the `payment` extra

    buffer = io.StringIO()
    segno.make(text.upper() if text.lower().startswith("ln") else text, error="l").terminal(
        out=buffer, compact=True
    )
    return buffer.getvalue()


def _line(out: TextIO, document: dict[str, Any]) -> None:
    out.write(json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n")
    out.flush()
