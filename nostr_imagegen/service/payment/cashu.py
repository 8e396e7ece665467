"""Cashu payments: a request carrying ``["cashu", TOKEN]`` is paid by redeeming the token.

    redeemer = CashuRedeemer(["https://mint.example"], wallet_dir=Path("/var/lib/dvm/cashu"))
    redemption = await redeemer.redeem(token, price_msats=21000)   # or PaymentRefused
    redemption.amount_msats, redemption.token_msats, redemption.mint, redemption.token_hash

Both token versions are read: ``cashuA`` (V3, base64 JSON) and ``cashuB`` (V4, base64 CBOR).
A token is accepted when it is from one of ``mints``, in ``sat``, worth at least the price
(rounded up to whole sats), and its mint swaps it (NUT-03) into the operator's wallet in
``wallet_dir``: the mint itself refuses proofs already spent, so one token pays once. The
amount kept is the token's worth less the mint's swap fee (``input_fee_ppk``), which the
operator bears.

The swap runs in a child process, ``cashu_bridge.py``, with the Python of a separate
environment holding the ``cashu`` package (nutshell): ``python=`` or the environment variable
``NOSTR_IMAGEGEN_CASHU_PYTHON`` (``.ci/setup`` makes ``.venv-cashu``). nutshell's pins do not fit
this library's environment and no other maintained package does the blinding crypto. The
token goes to the child on stdin, never in its arguments; ``wallet_dir`` holds the wallet's
seed (created 0700) and is never logged, nor is a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nostr_imagegen.errors import ConfigError, PaymentError, PaymentRefused
from nostr_imagegen.nostr.urls import HTTP_SCHEMES, url_problem

__all__ = ["CASHU_PYTHON_ENV", "MAX_TOKEN_CHARS", "CashuRedeemer", "CashuRedemption"]

logger = logging.getLogger(__name__)

#: The environment variable naming the Python that has the ``cashu`` package.
CASHU_PYTHON_ENV = "NOSTR_IMAGEGEN_CASHU_PYTHON"
#: A longer token is refused unread (a token of a few dozen proofs is a few KiB).
MAX_TOKEN_CHARS = 64 * 1024
_BRIDGE = Path(__file__).with_name("cashu_bridge.py")
_MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class CashuRedemption:
    """A redeemed token: what the wallet kept (the token's worth less the mint's swap fee),
    what the token was worth, from which mint, and the proofs' hash."""

    amount_msats: int
    mint: str
    token_hash: str
    token_msats: int


class CashuRedeemer:
    """Redeems Cashu tokens from ``mints`` into the wallet in ``wallet_dir``.

    ``python``: the interpreter with the ``cashu`` package (default:
    ``$NOSTR_IMAGEGEN_CASHU_PYTHON``).
    ``timeout_s``: how long one redemption (the mint's answers included) may take.
    """

    def __init__(
        self,
        mints: Sequence[str],
        *,
        wallet_dir: Path,
        python: str | Path | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        if isinstance(mints, str) or not mints:
            raise ConfigError("cashu mints must be a list of at least one mint URL")
        for mint in mints:
            problem = url_problem(mint, HTTP_SCHEMES)
            if problem is not None:
                raise ConfigError(f"cashu mint {mint!r} {problem}")
        self.mints = tuple(dict.fromkeys(m.rstrip("/") for m in mints))
        chosen = python if python is not None else os.environ.get(CASHU_PYTHON_ENV)
        if not chosen:
            raise ConfigError(
                f"Cashu redemption needs a Python with the cashu package: pass python= or set "
                f"{CASHU_PYTHON_ENV} (.ci/setup makes .venv-cashu)"
            )
        self._python = str(chosen)
        self._wallet_dir = Path(wallet_dir)
        self._timeout_s = timeout_s
        # One wallet database: redemptions take turns (SQLite, and the swap's counters).
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"CashuRedeemer({list(self.mints)!r})"

    async def redeem(self, token: str, *, price_msats: int) -> CashuRedemption:
        """Swap ``token`` into the operator's wallet if it pays ``price_msats``.

        Raises ``PaymentRefused`` (spent, short, malformed, foreign mint) or ``PaymentError``
        (the mint or the bridge failed: the token may be retried).
        """
        _check_shape(token)
        min_sat = -(-price_msats // 1000)
        self._wallet_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        request = {
            "token": token,
            "mints": list(self.mints),
            "min_sat": min_sat,
            "wallet_dir": str(self._wallet_dir),
        }
        async with self._lock:
            answer = await self._run(json.dumps(request).encode())
        if not answer.get("ok"):
            reason = str(answer.get("reason", "unknown"))[:300]
            if answer.get("refused"):
                raise PaymentRefused(reason)
            raise PaymentError(f"the cashu token could not be redeemed: {reason}")
        try:
            redemption = CashuRedemption(
                amount_msats=int(answer["amount_sat"]) * 1000,
                mint=str(answer["mint"]),
                token_hash=str(answer["token_hash"]),
                token_msats=int(answer["token_sat"]) * 1000,
            )
        except (KeyError, TypeError, ValueError):
            raise PaymentError("the cashu bridge answered something unreadable") from None
        logger.info(
            "cashu token %.16s redeemed at %s: %d msats",
            redemption.token_hash,
            redemption.mint,
            redemption.amount_msats,
        )
        return redemption

    async def _run(self, payload: bytes) -> dict[str, Any]:
        try:
            child = await asyncio.create_subprocess_exec(
                self._python,
                # Isolated: the bridge's folder is not on sys.path, or `import cashu` would
                # find this module (cashu.py) instead of the package; PYTHON* is ignored too.
                "-I",
                str(_BRIDGE),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,  # the wallet's chatter: never logged
            )
        except OSError as exc:
            raise PaymentError(f"the cashu bridge could not start: {exc.strerror}") from None
        try:
            async with asyncio.timeout(self._timeout_s):
                out, _ = await child.communicate(payload)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
            raise PaymentError(
                f"the cashu redemption took longer than {self._timeout_s} s"
            ) from None
        try:
            answer = json.loads(out[:_MAX_ANSWER_BYTES])
        except ValueError:
            raise PaymentError(
                f"the cashu bridge failed (exit status {child.returncode})"
            ) from None
        if not isinstance(answer, dict):
            raise PaymentError("the cashu bridge answered something unreadable")
        return answer


def _check_shape(token: object) -> None:
    """Refuse what is not a token before any process starts."""
    if not isinstance(token, str):
        raise PaymentRefused("the cashu token is not text")
    if len(token) > MAX_TOKEN_CHARS:
        raise PaymentRefused(f"the cashu token is longer than {MAX_TOKEN_CHARS} characters")
    if not token.startswith(("cashuA", "cashuB")) or not token.isascii() or len(token) < 10:
        raise PaymentRefused("the cashu token is malformed (expected cashuA... or cashuB...)")
