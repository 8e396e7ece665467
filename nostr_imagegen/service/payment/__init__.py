"""Getting paid: pricing, the payment flow, and the Lightning backends behind it.

* ``settings``: the ``[pricing]`` and ``[payment]`` TOML sections.
* ``pricing``: what a job costs (``ConfigPricing``, a ``PricingPolicy``).
* ``backend``: ``Invoice`` and the ``InvoiceBackend`` protocol; bolt11 decoding.
* ``lnbits``: ``LnbitsBackend`` (operator) and ``LnbitsPayer`` (customer).
* ``nwc``: ``NwcBackend`` and ``NwcPayer`` (NIP-47 Nostr Wallet Connect).
* ``flow``: ``PaymentFlow``, what the runner runs for a priced job.
* ``wait``: ``PaymentWait``, the older ``PaymentCheck`` hook's wait.
* ``zaps`` and ``cashu``: NIP-57 zap receipts and Cashu tokens.
"""

from nostr_imagegen.service.payment.backend import Invoice, InvoiceBackend, decode_invoice
from nostr_imagegen.service.payment.flow import PaymentFlow, PaymentSettings
from nostr_imagegen.service.payment.pricing import ConfigPricing, price_plan
from nostr_imagegen.service.payment.settings import PaymentConfig, PricingConfig
from nostr_imagegen.service.payment.wait import PaymentWait, price

__all__ = [
    "ConfigPricing",
    "Invoice",
    "InvoiceBackend",
    "PaymentConfig",
    "PaymentFlow",
    "PaymentSettings",
    "PaymentWait",
    "PricingConfig",
    "decode_invoice",
    "price",
    "price_plan",
]
