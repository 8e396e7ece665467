"""Getting paid: the runner's payment wait (``flow``) and one module per way to pay.

``flow`` is the former ``service/payment.py``, unchanged; ``zaps`` watches NIP-57 zap
receipts; ``cashu`` redeems Cashu tokens.
"""

from nostr_imagegen.service.payment.flow import PaymentWait, price

__all__ = ["PaymentWait", "price"]
