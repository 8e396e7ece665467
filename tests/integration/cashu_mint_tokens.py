"""Mint Cashu tokens at a test mint (FakeWallet pays its own invoices): run with the Python of
.venv-cashu, ``python cashu_mint_tokens.py MINT_URL WALLET_DIR AMOUNT [AMOUNT...]``; prints one
cashuB token per amount, one a line. Imports only the cashu package."""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def mint_tokens(url: str, wallet_dir: str, amounts: list[int]) -> list[str]:
    from cashu.wallet.wallet import Wallet

    wallet = await Wallet.with_db(url=url, db=wallet_dir, name="test-customer")
    await wallet.load_mint()
    tokens = []
    for amount in amounts:
        quote = await wallet.request_mint(amount)
        for _ in range(100):  # FakeWallet settles at once; the quote's state may lag a moment
            try:
                proofs = await wallet.mint(amount, quote_id=quote.quote)
                break
            except Exception:
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the test mint did not settle its quote")
        tokens.append(await wallet.serialize_proofs(proofs))
    return tokens


def main() -> None:
    from loguru import logger

    logger.remove()
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        tokens = asyncio.run(mint_tokens(sys.argv[1], sys.argv[2], [int(a) for a in sys.argv[3:]]))
    out.write("\n".join(tokens) + "\n")


if __name__ == "__main__":
    main()
