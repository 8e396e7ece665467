"""Build the payment pieces ``serve`` hands the runner from ``[pricing]`` and ``[payment]``.

    async with payment_pieces(config, pool=pool, ledger=ledger, plan=engine.plan) as kwargs:
        runner = JobRunner(..., **kwargs)   # pricing, invoices, zaps, cashu, payment_settings

Secrets (the LNbits invoice key, the NWC URI) are read here, from the environment or the
files the configuration names, and go straight into the backend objects (whose reprs hide
them); nothing here logs them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from nostr_imagegen.errors import ConfigError, PaymentError
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.service.ledger import Ledger
from nostr_imagegen.service.payment.backend import InvoiceBackend
from nostr_imagegen.service.payment.flow import PaymentSettings
from nostr_imagegen.service.payment.pricing import ConfigPricing
from nostr_imagegen.service.payment.settings import read_secret
from nostr_imagegen.service.seams import RelayPoolLike

if TYPE_CHECKING:
    from nostr_imagegen.service.config import ServiceConfig

__all__ = ["payment_pieces"]

logger = logging.getLogger(__name__)


def _invoice_backend(config: ServiceConfig, pool: RelayPoolLike) -> InvoiceBackend | None:
    payment = config.payment
    if payment.backend == "lnbits":
        from nostr_imagegen.service.payment.lnbits import LnbitsBackend

        settings = payment.lnbits
        assert settings is not None  # PaymentConfig.check
        key = read_secret(
            file=settings.invoice_key_file, env=settings.invoice_key_env, what="LNbits invoice key"
        )
        return LnbitsBackend(
            settings.url,
            key,
            websocket=settings.websocket,
            poll_interval_s=settings.poll_interval_s,
        )
    if payment.backend == "nwc":
        from nostr_imagegen.service.payment.nwc import NwcBackend

        nwc = payment.nwc
        assert nwc is not None  # PaymentConfig.check
        uri = read_secret(file=nwc.uri_file, env=nwc.uri_env, what="NWC connection URI")
        try:
            return NwcBackend.from_uri(
                uri, poll_interval_s=nwc.poll_interval_s, request_timeout_s=nwc.request_timeout_s
            )
        except PaymentError as exc:
            raise ConfigError(str(exc)) from None
    return None


@contextlib.asynccontextmanager
async def payment_pieces(
    config: ServiceConfig,
    *,
    pool: RelayPoolLike,
    ledger: Ledger,
    plan: Callable[[ImageJob], Any],
    provider_pubkey: str | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The runner's payment keyword arguments (empty for a free DVM); closes the backend."""
    if config.pricing.free:
        yield {}
        return
    payment = config.payment
    default_steps = {name: model.steps for name, model in config.models.items()}
    kwargs: dict[str, Any] = {
        "pricing": ConfigPricing(config.pricing, plan=plan, default_steps=default_steps),
        "payment_settings": PaymentSettings(
            mode=payment.mode,
            timeout_s=payment.timeout_s,
            invoice_expiry_s=payment.invoice_expiry_s,
            free_jobs_per_day=config.pricing.free_jobs_per_day,
        ),
    }
    backend = _invoice_backend(config, pool)
    if backend is not None:
        kwargs["invoices"] = backend
    stack = contextlib.AsyncExitStack()
    if payment.zaps is not None:
        from nostr_imagegen.service.payment.zaps import ZapWatcher, fetch_lnurl_pubkey
        from nostr_imagegen.service.relay import RelayPool

        lnurl_pubkey = await fetch_lnurl_pubkey(payment.zaps.lud16)
        # Connections of its own: a watcher reads its pool's events(), which on the runner's
        # pool would take job requests away from the runner.
        zap_pool = await stack.enter_async_context(RelayPool(config.service.relays))
        kwargs["zaps"] = ZapWatcher(
            zap_pool,
            lnurl_pubkey=lnurl_pubkey,
            seen=lambda receipt_id: ledger.proof_used(f"zap:{receipt_id}"),
            # Hosted LNURL servers sign every user's receipts with one key: only the zap
            # request's `p` shows that this DVM was the one paid.
            recipient_pubkey=provider_pubkey,
        )
    if payment.cashu is not None:
        from nostr_imagegen.service.payment.cashu import CashuRedeemer

        kwargs["cashu"] = CashuRedeemer(
            payment.cashu.mints, wallet_dir=payment.cashu.wallet_dir, python=payment.cashu.python
        )
    try:
        yield kwargs
    finally:
        if "zaps" in kwargs:
            await kwargs["zaps"].close()
        await stack.aclose()
        if backend is not None:
            await backend.aclose()
