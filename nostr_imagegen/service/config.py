"""The DVM's configuration: the engine's TOML plus the service sections, and key loading.

One TOML file. The engine's keys (``device``, ``dtype``, ``[models.*]``, ``[loras.*]``,
``[limits]``, ``[cache]``, ``[upscaler]``, ``[output]``; see ``nostr_imagegen.engine_config``)
sit at the top level beside these sections::

    [service]
    relays = ["wss://relay.damus.io", "wss://nos.lol"]
    ledger = "dvm-ledger.sqlite3"          # the job ledger (SQLite), kept across restarts
    ledger_durable = false                 # true: fsync each commit (power-cut safe, slower)
    accepted_kinds = [5100]                # add 5050 for clients of the first 5100 draft
    lookback_s = 120                       # requests this old are still served at start
    progress_interval_s = 2.0
    shutdown_timeout_s = 30.0
    max_reply_relays = 3                   # relays from a request's `relays` tag we answer on
    allow_private_relays = false           # let requests name loopback/LAN relays (tests)

    [identity]
    secret_key_file = "dvm.key"            # nsec1... or 64 hex, one line, chmod 600
    secret_key_env = "NOSTR_IMAGEGEN_NSEC" # read first when set (default name shown)

    [[storage]]                            # image hosts, tried in this order
    type = "blossom"
    servers = ["https://blossom.example.com"]
    [[storage]]
    type = "nip96"
    url = "https://nostr.build"
    [[storage]]
    type = "local"
    folder = "images"
    base_url = "https://images.example.org"   # where a web server publishes the folder
    # listen = "127.0.0.1:8090"            # or serve it ourselves (GET/HEAD only)

    [announce]                             # NIP-89 handler information (kind 31990)
    name = "Ostrich Images"
    about = "Stable Diffusion XL on one GPU"
    picture = "https://example.org/dvm.png"
    identifier = "nostr-imagegen"
    refresh_hours = 12

    [queue]
    size = 8                               # jobs waiting for the engine; more get "busy"

    [fetch]                                # input images (img2img)
    max_bytes = 20971520
    timeout_s = 20.0
    max_pixels = 40000000
    allow_hosts = []                       # "host:port" of trusted internal image stores
    allow_private_addresses = false        # never true on a public DVM

    [policy]                               # abuse control, every rule off until set
    max_jobs_per_minute = 5                # (docs/operations.md lists them all)
    [chaining]                             # `job` / `event` inputs (NIP-90 job chaining)
    wait_s = 120.0
    [metrics]                              # /metrics, /healthz and the status page
    listen = "127.0.0.1:9464"
    [engine]                               # several engines, batching, Ray: docs/scaling.md
    backend = "local"

Relative paths (ledger, key file, storage folder) are relative to the configuration file.

The secret key is never written in this file: a string that is an ``nsec``, or a key in
``[identity]`` named like one (``secret_key``, ``nsec``, ``private_key``...), is refused
with a ``ConfigError`` saying where the key belongs. Errors never quote the secret.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from nostr_imagegen.engine_config import EngineConfig, read_config_file
from nostr_imagegen.errors import ConfigError, KeyFormatError
from nostr_imagegen.nostr.hexkeys import is_hex64
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.kinds import IMAGE_GENERATION_KIND
from nostr_imagegen.nostr.urls import HTTP_SCHEMES, RELAY_SCHEMES, url_problem
from nostr_imagegen.service.chaining import ChainingConfig
from nostr_imagegen.service.metrics.config import MetricsConfig
from nostr_imagegen.service.origins import MAX_ALLOW_HOSTS, normalize_origin
from nostr_imagegen.service.payment.settings import PaymentConfig, PricingConfig
from nostr_imagegen.service.policy.config import PolicyConfig
from nostr_imagegen.service.scaling import EngineSection

if TYPE_CHECKING:
    from nostr_imagegen.service.fetch import FetchPolicy

__all__ = [
    "DEFAULT_KEY_ENV",
    "AnnounceConfig",
    "BlossomStorage",
    "FetchConfig",
    "IdentityConfig",
    "LocalStorage",
    "Nip96Storage",
    "QueueConfig",
    "ServiceConfig",
    "ServiceSection",
    "StorageConfig",
    "load_engine_part",
    "load_keys",
    "load_service_config",
]

logger = logging.getLogger(__name__)

#: The environment variable read for the secret key when ``[identity]`` names none.
DEFAULT_KEY_ENV: Final = "NOSTR_IMAGEGEN_NSEC"

_LISTEN = re.compile(r"(?P<host>[0-9A-Za-z.:\[\]-]+):(?P<port>[0-9]{1,5})")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Key names that mean "I am pasting my secret key here".
_SECRET_KEY_NAMES = re.compile(r"(secret|private|nsec|seed|priv)", re.IGNORECASE)
_ALLOWED_IDENTITY_KEYS = frozenset({"secret_key_file", "secret_key_env"})

RelayUrl = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


def _http_url(value: str) -> str:
    problem = url_problem(value, HTTP_SCHEMES)
    if problem is not None:
        raise ValueError(f"{value!r} {problem}")
    return value


#: An http(s) URL of an image host.
HttpUrlText = Annotated[Text, AfterValidator(_http_url)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServiceSection(_Section):
    """``[service]``: relays, the ledger, and the runner's knobs."""

    relays: tuple[RelayUrl, ...] = Field(min_length=1, max_length=64)
    ledger: Path = Path("dvm-ledger.sqlite3")
    accepted_kinds: tuple[int, ...] = Field(
        default=(IMAGE_GENERATION_KIND,), min_length=1, max_length=100
    )
    lookback_s: int = Field(default=120, ge=0, le=7 * 24 * 3600)
    progress_interval_s: float = Field(default=2.0, ge=0.0, le=3600.0)
    shutdown_timeout_s: float = Field(default=30.0, ge=0.0, le=3600.0)
    publish_timeout_s: float = Field(default=10.0, gt=0.0, le=300.0)
    max_reply_relays: int = Field(default=3, ge=0, le=20)
    allow_private_relays: bool = False
    payment_timeout_s: float = Field(default=600.0, gt=0.0, le=24 * 3600.0)
    feedback_expiration_s: int | None = Field(default=24 * 3600, ge=60)
    result_expiration_s: int | None = Field(default=None, ge=60)
    #: A job that was running when the service died this many times gets `error`.
    max_attempts: int = Field(default=2, ge=1, le=100)
    resume_max_age_s: float = Field(default=3600.0, ge=0.0)
    #: Finished jobs are forgotten after this many days (0: never).
    ledger_retention_days: float = Field(default=30.0, ge=0.0)
    #: fsync every ledger commit (``synchronous=FULL``): survives power cuts, costs ms/job.
    ledger_durable: bool = False

    @field_validator("relays")
    @classmethod
    def _relay_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            problem = url_problem(url, RELAY_SCHEMES)
            if problem is not None:
                raise ValueError(f"relay {url!r} {problem}")
        return tuple(dict.fromkeys(value))

    @field_validator("accepted_kinds")
    @classmethod
    def _request_kinds(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        for kind in value:
            if not 5000 <= kind <= 5999:
                raise ValueError(f"{kind} is not a NIP-90 job request kind (5000..5999)")
        return tuple(dict.fromkeys(value))


class IdentityConfig(_Section):
    """``[identity]``: where the secret key is, never the key itself."""

    secret_key_file: Path | None = None
    secret_key_env: str = DEFAULT_KEY_ENV

    @field_validator("secret_key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError("must be an environment variable name (letters, digits, _)")
        return value


class BlossomStorage(_Section):
    """Blossom servers (BUD-02), tried in order; the rest get a copy when ``mirror``."""

    type: Literal["blossom"]
    servers: tuple[HttpUrlText, ...] = Field(min_length=1, max_length=16)
    mirror: bool = True
    timeout_s: float = Field(default=60.0, gt=0.0, le=600.0)


class Nip96Storage(_Section):
    """A NIP-96 server (its root, e.g. ``https://nostr.build``, or its upload API URL)."""

    type: Literal["nip96"]
    url: HttpUrlText
    timeout_s: float = Field(default=60.0, gt=0.0, le=600.0)


class LocalStorage(_Section):
    """A folder published by a web server at ``base_url``, or by our own (``listen``)."""

    type: Literal["local"]
    folder: Path
    base_url: HttpUrlText | None = None
    #: ``host:port`` for the built-in GET/HEAD-only file server (demos, small setups).
    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            match = _LISTEN.fullmatch(value)
            if match is None or not 0 <= int(match["port"]) <= 65535:
                raise ValueError("listen must be host:port, e.g. 127.0.0.1:8090")
        return value

    def listen_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of ``listen``, or None."""
        if self.listen is None:
            return None
        match = _LISTEN.fullmatch(self.listen)
        assert match is not None
        return match["host"].strip("[]"), int(match["port"])


StorageConfig = Annotated[BlossomStorage | Nip96Storage | LocalStorage, Field(discriminator="type")]


class AnnounceConfig(_Section):
    """``[announce]``: the NIP-89 handler information (kind 31990)."""

    enabled: bool = True
    name: Text = "nostr-imagegen"
    about: Text = "Image generation (NIP-90 kind 5100) with diffusers"
    picture: Text | None = None
    identifier: Annotated[str, StringConstraints(min_length=1, max_length=256)] = "nostr-imagegen"
    refresh_hours: float = Field(default=12.0, ge=0.1, le=24 * 30)


class QueueConfig(_Section):
    """``[queue]``: jobs waiting for the engine; when full, new ones get `error` (busy)."""

    size: int = Field(default=8, ge=1, le=10_000)


class FetchConfig(_Section):
    """``[fetch]``: limits for input images (img2img); see ``service.fetch.FetchPolicy``."""

    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    timeout_s: float = Field(default=20.0, gt=0.0, le=600.0)
    connect_timeout_s: float = Field(default=5.0, gt=0.0, le=120.0)
    max_redirects: int = Field(default=3, ge=0, le=10)
    max_pixels: int = Field(default=40_000_000, ge=64 * 64)
    #: ``host:port`` origins (an internal image store) that skip the public-address rule;
    #: each redirect hop is checked again. See ``service.origins``.
    allow_hosts: tuple[str, ...] = Field(default=(), max_length=MAX_ALLOW_HOSTS)
    #: Fetch from loopback and private addresses too. Tests and demos only.
    allow_private_addresses: bool = False

    @field_validator("allow_hosts")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return tuple(dict.fromkeys(normalize_origin(entry) for entry in value))
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    def policy(self) -> FetchPolicy:
        """The ``FetchPolicy`` these settings describe (``ConfigError`` if inconsistent)."""
        from nostr_imagegen.service.fetch import FetchPolicy

        return FetchPolicy(
            max_bytes=self.max_bytes,
            timeout_s=self.timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            max_redirects=self.max_redirects,
            max_pixels=self.max_pixels,
            allow_hosts=frozenset(self.allow_hosts),
            allow_private_addresses=self.allow_private_addresses,
        )


class ServiceConfig(EngineConfig):
    """The engine's configuration plus the DVM's own sections. Build it with
    ``load_service_config`` (or ``ServiceConfig.from_mapping(data, source=path)``)."""

    service: ServiceSection
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    storage: tuple[StorageConfig, ...] = Field(min_length=1, max_length=16)
    announce: AnnounceConfig = Field(default_factory=AnnounceConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    #: Abuse control, job chaining, metrics: see docs/operations.md.
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    chaining: ChainingConfig = Field(default_factory=ChainingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    #: How many engines, where they run, how jobs reach them: docs/scaling.md.
    engine: EngineSection = Field(default_factory=EngineSection)
    #: Prices and how they are paid (``service.payment.settings``); free by default.
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    payment: PaymentConfig = Field(default_factory=PaymentConfig)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: Path | str | None = None) -> Self:
        """Validate parsed TOML data. Refuses a secret key written in it (``ConfigError``).

        Relative paths of the service sections are resolved against ``source``'s folder.
        """
        where = str(source) if source is not None else "service configuration"
        _refuse_secrets(data, where)
        config = super().from_mapping(data, source=source)
        try:
            config.payment.check()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not config.pricing.free and not config.payment.enabled:
            raise ConfigError(
                f"{where}: [pricing] sets prices but no [payment] says how to pay them"
            )
        if source is None:
            return config
        base = Path(source).resolve().parent
        storage = tuple(
            item.model_copy(update={"folder": _relative(item.folder, base)})
            if isinstance(item, LocalStorage)
            else item
            for item in config.storage
        )
        identity = config.identity
        if identity.secret_key_file is not None:
            identity = identity.model_copy(
                update={"secret_key_file": _relative(identity.secret_key_file, base)}
            )
        service = config.service.model_copy(
            update={"ledger": _relative(config.service.ledger, base)}
        )
        payment = _payment_paths(config.payment, base)
        return config.model_copy(
            update={
                "storage": storage,
                "identity": identity,
                "service": service,
                "policy": config.policy.resolved(base),
                "payment": payment,
            }
        )

    def engine_config(self) -> EngineConfig:
        """Only the engine's part (what ``Engine`` takes)."""
        fields = set(EngineConfig.model_fields)
        return EngineConfig.model_validate(
            {name: getattr(self, name) for name in fields}, context=None
        )


#: The top-level keys of a DVM TOML that an engine TOML does not have.
_SERVICE_SECTIONS: Final = frozenset(ServiceConfig.model_fields) - frozenset(
    EngineConfig.model_fields
)


def _relative(path: Path, base: Path, *, resolve_links: bool = True) -> Path:
    expanded = path.expanduser()
    if expanded.is_absolute():
        return expanded
    if not resolve_links:
        # A virtual environment's bin/python is a link to the base interpreter: followed, it
        # would run without the environment's packages. Made absolute, links kept.
        return Path(os.path.normpath(base / expanded))
    return (base / expanded).resolve()


def _payment_paths(payment: PaymentConfig, base: Path) -> PaymentConfig:
    """``[payment.*]`` file paths resolved against the configuration's folder."""
    update: dict[str, Any] = {}
    if payment.lnbits is not None and payment.lnbits.invoice_key_file is not None:
        update["lnbits"] = payment.lnbits.model_copy(
            update={"invoice_key_file": _relative(payment.lnbits.invoice_key_file, base)}
        )
    if payment.nwc is not None and payment.nwc.uri_file is not None:
        update["nwc"] = payment.nwc.model_copy(
            update={"uri_file": _relative(payment.nwc.uri_file, base)}
        )
    if payment.cashu is not None:
        cashu = payment.cashu
        python = (
            None if cashu.python is None else _relative(cashu.python, base, resolve_links=False)
        )
        update["cashu"] = cashu.model_copy(
            update={"wallet_dir": _relative(cashu.wallet_dir, base), "python": python}
        )
    return payment.model_copy(update=update) if update else payment


def _refuse_secrets(data: Mapping[str, Any], where: str) -> None:
    """Raise ``ConfigError`` if the TOML carries a secret key; never quote the value."""
    advice = (
        "never write the secret key in the configuration file: put it in a file named by "
        f"[identity] secret_key_file (readable only by the service), or in the environment "
        f"variable {DEFAULT_KEY_ENV}"
    )
    identity = data.get("identity")
    if isinstance(identity, Mapping):
        for key, value in identity.items():
            if key in _ALLOWED_IDENTITY_KEYS:
                if isinstance(value, str) and _looks_secret(value):
                    raise ConfigError(f"{where}: identity.{key} holds a key, not a name; {advice}")
                continue
            if _SECRET_KEY_NAMES.search(str(key)) or (
                isinstance(value, str) and is_hex64(value.strip().lower())
            ):
                raise ConfigError(f"{where}: identity.{key}: {advice}")
    for location, value in _strings(data, ()):
        if value.strip().lower().startswith("nsec1"):
            raise ConfigError(f"{where}: {location} holds an nsec secret key; {advice}")
        if value.strip().lower().startswith("nostr+walletconnect:"):
            raise ConfigError(
                f"{where}: {location} holds a wallet connection URI (a secret): put it in the "
                "file named by [payment.nwc] uri_file, or in the environment"
            )


def _looks_secret(value: str) -> bool:
    text = value.strip()
    return text.lower().startswith("nsec1") or is_hex64(text.lower())


def _strings(value: Any, path: tuple[str, ...]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        found.append((".".join(path) or "(top level)", value))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            found.extend(_strings(item, (*path, str(key))))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.extend(_strings(item, (*path, f"[{index}]")))
    return found


def load_service_config(path: Path | str) -> ServiceConfig:
    """Read and validate a DVM TOML file. Raises ``ConfigError`` naming the file and field."""
    return ServiceConfig.from_mapping(read_config_file(path), source=path)


def load_engine_part(path: Path | str) -> EngineConfig:
    """The engine configuration in an engine TOML, or the engine part of a DVM TOML (what
    ``nostr-imagegen run`` and ``demo`` take). Raises ``ConfigError`` naming file and field.

    A file with any of the DVM's own sections (``[service]``, ``[identity]``, ``[[storage]]``,
    ...) is validated whole as a DVM configuration, so its mistakes are named as such, and
    a secret key written in it is refused; any other file is an engine configuration.
    """
    data = read_config_file(path)
    if _SERVICE_SECTIONS.isdisjoint(data):
        return EngineConfig.from_mapping(data, source=path)
    return ServiceConfig.from_mapping(data, source=path).engine_config()


def load_keys(identity: IdentityConfig, *, environ: Mapping[str, str] | None = None) -> Keys:
    """The service's keys: from the environment variable when set, else from the key file.

    The file holds an ``nsec1...`` or 64 hex characters (surrounding whitespace ignored);
    a file that others can read is used but logged as a warning. Raises ``ConfigError``
    (never quoting the key).
    """
    env = os.environ if environ is None else environ
    from_env = env.get(identity.secret_key_env, "").strip()
    if from_env:
        try:
            return Keys.parse(from_env)
        except KeyFormatError as exc:
            raise ConfigError(
                f"environment variable {identity.secret_key_env} is not a valid key: {exc}"
            ) from None
    path = identity.secret_key_file
    if path is None:
        raise ConfigError(
            f"no secret key: set the environment variable {identity.secret_key_env} or "
            "[identity] secret_key_file (create one with `nostr-imagegen keygen`)"
        )
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the secret key file {path}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("secret key file %s is readable by others: chmod 600 it", path)
    try:
        return Keys.parse(text.strip())
    except KeyFormatError as exc:
        raise ConfigError(f"secret key file {path} does not hold a valid key: {exc}") from None
