"""The ``[pricing]`` and ``[payment]`` sections of the DVM's TOML (default: every job free).

    [pricing]                              # millisats; all optional, all 0 by default
    job_msats = 21000                      # the flat price of a job
    per_megapixel_msats = 10000            # per million generated pixels
    per_step_msats = 100                   # per step above the model's default
    per_extra_image_msats = 5000           # per image after the first
    per_lora_msats = 2000                  # per LoRA asked for
    free_jobs_per_day = 3                  # per customer, before any price applies
    [pricing.models]                       # a model's own flat price, instead of job_msats
    sdxl = 50000

    [payment]
    backend = "lnbits"                     # or "nwc"
    mode = "before"                        # or "after": result first, invoice in the result
    timeout_s = 600                        # how long a `payment-required` job waits
    invoice_expiry_s = 600                 # the invoices' own expiry

    [payment.lnbits]
    url = "https://lnbits.example.org"
    invoice_key_file = "lnbits-invoice.key" # or invoice_key_env (default LNBITS_INVOICE_KEY)

    [payment.nwc]
    uri_file = "nwc.uri"                   # nostr+walletconnect://...; or uri_env

    [payment.zaps]
    lud16 = "dvm@getalby.com"

    [payment.cashu]
    mints = ["https://mint.example.org"]

Secrets are never in this file: ``invoice_key`` or ``uri`` keys are refused (``extra =
forbid``), and a ``nostr+walletconnect://`` string anywhere is refused by the service config.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from nostr_imagegen.errors import ConfigError
from nostr_imagegen.nostr.kinds import MAX_MSATS

__all__ = [
    "DEFAULT_LNBITS_KEY_ENV",
    "DEFAULT_NWC_URI_ENV",
    "CashuSettings",
    "LnbitsSettings",
    "NwcSettings",
    "PaymentConfig",
    "PricingConfig",
    "ZapSettings",
    "read_secret",
]

#: Where the LNbits invoice key is read from when no file is named.
DEFAULT_LNBITS_KEY_ENV: Final = "LNBITS_INVOICE_KEY"
#: Where the NWC connection URI is read from when no file is named.
DEFAULT_NWC_URI_ENV: Final = "NOSTR_IMAGEGEN_NWC_URI"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s]*)?$")
_LUD16 = re.compile(r"^[a-z0-9_.+-]{1,64}@[a-z0-9.-]{1,253}\.[a-z]{2,63}$", re.IGNORECASE)

Msats = Annotated[int, Field(ge=0, le=MAX_MSATS)]
EnvName = Annotated[str, StringConstraints(pattern=_ENV_NAME.pattern)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PricingConfig(_Section):
    """``[pricing]``: what a job costs, in millisats. All zero (the default) means free."""

    job_msats: Msats = 0
    models: dict[str, Msats] = Field(default_factory=dict)
    per_megapixel_msats: Msats = 0
    per_step_msats: Msats = 0
    per_extra_image_msats: Msats = 0
    per_lora_msats: Msats = 0
    free_jobs_per_day: int = Field(default=0, ge=0, le=1_000_000)

    @property
    def free(self) -> bool:
        """True when no job can cost anything."""
        return not (
            self.job_msats
            or any(self.models.values())
            or self.per_megapixel_msats
            or self.per_step_msats
            or self.per_extra_image_msats
            or self.per_lora_msats
        )


def _http_url(value: str) -> str:
    if not _HTTP_URL.match(value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


class LnbitsSettings(_Section):
    """``[payment.lnbits]``: the operator's LNbits wallet (its invoice key, never admin)."""

    url: str
    invoice_key_file: Path | None = None
    invoice_key_env: EnvName = DEFAULT_LNBITS_KEY_ENV
    #: Learn of settlement by LNbits' websocket (a hint, confirmed over REST) besides polling.
    websocket: bool = True
    poll_interval_s: float = Field(default=2.0, gt=0.0, le=60.0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


class NwcSettings(_Section):
    """``[payment.nwc]``: a NIP-47 wallet connection (the URI is a secret: file or env)."""

    uri_file: Path | None = None
    uri_env: EnvName = DEFAULT_NWC_URI_ENV
    #: Besides notifications (23196/23197), ask ``lookup_invoice`` this often.
    poll_interval_s: float = Field(default=5.0, gt=0.0, le=600.0)
    request_timeout_s: float = Field(default=20.0, gt=0.0, le=300.0)


class ZapSettings(_Section):
    """``[payment.zaps]``: accept NIP-57 zaps to this lightning address."""

    lud16: str

    @field_validator("lud16")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _LUD16.match(value.strip()):
            raise ValueError(f"{value!r} is not a lightning address (name@domain)")
        return value.strip().lower()


class CashuSettings(_Section):
    """``[payment.cashu]``: accept Cashu tokens from these mints only."""

    mints: tuple[str, ...] = Field(min_length=1, max_length=32)
    wallet_dir: Path = Path("cashu-wallet")
    #: The Python of the environment holding the ``cashu`` wallet (the redeemer's bridge runs
    #: there); None: ``NOSTR_IMAGEGEN_CASHU_PYTHON`` from the environment.
    python: Path | None = None

    @field_validator("mints")
    @classmethod
    def _mints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_http_url(url) for url in value))


class PaymentConfig(_Section):
    """``[payment]``: how priced jobs are paid. Without it a priced job is refused at start
    (``ConfigError``): a price nobody can pay would only turn customers away."""

    backend: Literal["lnbits", "nwc"] | None = None
    mode: Literal["before", "after"] = "before"
    timeout_s: float = Field(default=600.0, gt=0.0, le=24 * 3600.0)
    invoice_expiry_s: int = Field(default=600, ge=60, le=7 * 24 * 3600)
    lnbits: LnbitsSettings | None = None
    nwc: NwcSettings | None = None
    zaps: ZapSettings | None = None
    cashu: CashuSettings | None = None

    def check(self) -> None:
        """``ConfigError`` when the chosen backend has no section."""
        if self.backend == "lnbits" and self.lnbits is None:
            raise ConfigError('[payment] backend = "lnbits" needs a [payment.lnbits] section')
        if self.backend == "nwc" and self.nwc is None:
            raise ConfigError('[payment] backend = "nwc" needs a [payment.nwc] section')
        if self.mode == "after" and self.backend is None:
            raise ConfigError('[payment] mode = "after" needs an invoice backend')

    @property
    def enabled(self) -> bool:
        """True when some way to pay is configured."""
        return self.backend is not None or self.zaps is not None or self.cashu is not None


def read_secret(*, file: Path | None, env: str, what: str) -> str:
    """A secret from the environment variable ``env`` (first) or ``file``: ``ConfigError``
    when neither holds one. The value is never part of an error message."""
    value = os.environ.get(env, "").strip()
    if value:
        return value
    if file is None:
        raise ConfigError(f"no {what}: set the environment variable {env} or name a file")
    try:
        value = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the {what} file {file}: {exc.__class__.__name__}") from None
    if not value:
        raise ConfigError(f"the {what} file {file} is empty")
    return value
