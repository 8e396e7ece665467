"""Redeem one Cashu token with the ``cashu`` (nutshell) wallet: run by ``CashuRedeemer`` with
the Python of the separate environment that holds ``cashu`` (``.venv-cashu``).

Why a separate process: nutshell pins httpx, cryptography and websockets to versions the
library's own environment cannot take, and no other maintained Python package does Cashu's
blind-signature crypto; the crypto is never written by hand here. This file imports only the
standard library and ``cashu``, never nostr_imagegen.

The wire form, one JSON object each way (the token travels on stdin, never in argv)::

    stdin:  {"token": "cashuB...", "mints": ["https://mint.example"], "min_sat": 21,
             "wallet_dir": "/var/lib/dvm/cashu"}
    stdout: {"ok": true, "amount_sat": 20, "token_sat": 21, "mint": "https://mint.example",
             "token_hash": "<sha256 hex of the proofs' secrets>"}
         or {"ok": false, "refused": true, "reason": "the cashu token is already spent"}
         or {"ok": false, "refused": false, "reason": "ConnectError: ..."}

Redeeming is a NUT-03 swap at the token's mint: the proofs are spent and fresh ones, blinded
for the wallet in ``wallet_dir``, are stored there. The mint refuses proofs already spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
from typing import Any

MAX_INPUT_BYTES = 256 * 1024


class Refused(Exception):
    """The token itself is not acceptable (the customer's fault)."""


async def redeem(token: str, mints: list[str], min_sat: int, wallet_dir: str) -> dict[str, Any]:
    from cashu.core.base import TokenV3
    from cashu.wallet.helpers import deserialize_token_from_string
    from cashu.wallet.wallet import Wallet

    try:
        parsed = deserialize_token_from_string(token)
        proofs = parsed.proofs
        amount = int(parsed.amount)
        mint = str(parsed.mint).rstrip("/")
        unit = parsed.unit or "sat"
    except Exception:
        raise Refused("the cashu token is malformed") from None
    if isinstance(parsed, TokenV3) and len({t.mint for t in parsed.token}) > 1:
        raise Refused("the cashu token holds proofs of more than one mint")
    if not proofs:
        raise Refused("the cashu token holds no proofs")
    if mint not in mints:
        raise Refused(f"the cashu token's mint {mint[:100]} is not one this service accepts")
    if unit != "sat":
        raise Refused(f"the cashu token is in {unit[:20]}, not sat")
    if amount < min_sat:
        raise Refused(f"the cashu token is worth {amount} sat; the job costs {min_sat} sat")
    token_hash = hashlib.sha256("\n".join(sorted(p.secret for p in proofs)).encode()).hexdigest()
    wallet = await Wallet.with_db(url=mint, db=wallet_dir, name="nostr-imagegen")
    await wallet.load_mint()
    await wallet._expand_short_keyset_ids(proofs)
    try:
        kept, _ = await wallet.redeem(proofs)
    except Exception as exc:
        text = str(exc).lower()
        if "spent" in text or "pending" in text:
            raise Refused("the cashu token is already spent") from None
        if "signature" in text or "dleq" in text or "unknown keyset" in text or "keyset" in text:
            raise Refused(f"the cashu token is not valid at its mint: {str(exc)[:120]}") from None
        raise
    return {
        "ok": True,
        "amount_sat": sum(p.amount for p in kept),
        "token_sat": amount,
        "mint": mint,
        "token_hash": token_hash,
    }


def main() -> None:
    out = sys.stdout
    try:
        request = json.loads(sys.stdin.read(MAX_INPUT_BYTES))
        from loguru import logger

        logger.remove()  # nutshell logs proofs at debug level; nothing of it leaves here
        # The wallet prints (a new seed's notice, amounts): keep stdout for the one answer.
        with contextlib.redirect_stdout(sys.stderr):
            answer = asyncio.run(
                redeem(
                    str(request["token"]),
                    [str(m).rstrip("/") for m in request["mints"]],
                    int(request["min_sat"]),
                    str(request["wallet_dir"]),
                )
            )
    except Refused as exc:
        answer = {"ok": False, "refused": True, "reason": str(exc)}
    except Exception as exc:
        answer = {"ok": False, "refused": False, "reason": f"{type(exc).__name__}: {exc}"[:300]}
    out.write(json.dumps(answer))
    out.flush()


if __name__ == "__main__":
    main()
