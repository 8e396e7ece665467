"""Every exception nostr_imagegen raises, in one tree.

Catch ``NostrImagegenError`` to catch them all. Third-party errors (pydantic, coincurve,
cryptography, diffusers, httpx, websockets) are re-raised as one of these with ``from exc``;
none of them escapes the public API.

    NostrImagegenError
    ├── EventError               an event is malformed, or its id or signature is wrong
    │   ├── InvalidEventId
    │   └── InvalidSignature
    ├── KeyFormatError           a key is not 32 bytes of hex, nsec or npub
    ├── Bech32Error              a NIP-19 string does not decode
    ├── EncryptionError          NIP-04 / NIP-44 payload cannot be encrypted or decrypted
    ├── MessageError             a relay wire frame is malformed
    ├── JobRejected              a job request we cannot serve: answered with `error` feedback
    ├── JobSkipped               a job request that is not for us: ignored silently
    │   ├── NotForThisProvider   addressed (`p` tag) to another service provider
    │   └── UnsupportedKind      not a request kind this provider accepts
    ├── ZapReceiptInvalid        a NIP-57 zap receipt does not prove the payment asked for
    ├── ConfigError              an operator configuration file is invalid
    ├── EngineError              image generation failed (out of memory, pipeline error)
    │   └── JobCancelled         the job was cancelled between two steps
    └── ServiceError             I/O around a job failed
        ├── FetchError           an input image was refused or could not be fetched
        ├── UploadError          no image host accepted the result
        ├── RelayError           a relay connection or publish failed
        ├── LedgerError          the job ledger cannot be read or written
        └── PaymentError         a payment backend failed (LNURL, wallet, mint)
            └── PaymentRefused   the customer's payment is not accepted (spent, short, foreign)

``JobRejected`` carries the offending wire tag (``.tag``) and a reason written for the
customer; its ``str()`` is what goes into the `error` feedback event. ``ZapReceiptInvalid``
and ``PaymentRefused`` carry ``.reason``, written for the customer too.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "Bech32Error",
    "ConfigError",
    "EncryptionError",
    "EngineError",
    "EngineUnavailable",
    "EventError",
    "FetchError",
    "InvalidEventId",
    "InvalidSignature",
    "JobCancelled",
    "JobRejected",
    "JobSkipped",
    "KeyFormatError",
    "LedgerError",
    "MessageError",
    "NostrImagegenError",
    "NotForThisProvider",
    "PaymentError",
    "PaymentRefused",
    "RelayError",
    "ServiceError",
    "UnsupportedKind",
    "UploadError",
    "ZapReceiptInvalid",
]


class NostrImagegenError(Exception):
    """Base of every error raised by nostr_imagegen."""


class EventError(NostrImagegenError):
    """An event does not have the NIP-01 shape, or its id or signature does not check out."""


class InvalidEventId(EventError):
    """The event's `id` is not the sha256 of its canonical serialization."""


class InvalidSignature(EventError):
    """The event's `sig` is not a valid BIP-340 signature of its id by its pubkey."""


class KeyFormatError(NostrImagegenError):
    """A key is not 64 hex characters, an nsec or an npub, or is not a valid secp256k1 key."""


class Bech32Error(NostrImagegenError):
    """A NIP-19 bech32 string is malformed, has a bad checksum or an unexpected prefix."""


class EncryptionError(NostrImagegenError):
    """A NIP-04 or NIP-44 payload could not be encrypted or decrypted."""


class MessageError(NostrImagegenError):
    """A relay wire message (NIP-01 frame) is malformed."""


class JobRejected(NostrImagegenError):
    """A job request that this provider will not serve, with a reason the customer can read.

    ``tag`` is the wire tag that caused the rejection (``["param", "ratio", "5:4"]``), or
    ``None`` when the request as a whole is at fault.
    """

    def __init__(self, reason: str, tag: Sequence[str] | None = None) -> None:
        self.reason = reason
        self.tag: tuple[str, ...] | None = tuple(tag) if tag is not None else None
        super().__init__(reason)

    def __str__(self) -> str:
        if self.tag is None:
            return self.reason
        return f"{self.reason} (tag {list(self.tag)!r})"


class JobSkipped(NostrImagegenError):
    """A job request that is not for this provider; the spec says to ignore it silently."""


class NotForThisProvider(JobSkipped):
    """The request's `p` tag names another service provider."""

    def __init__(self, providers: Sequence[str]) -> None:
        self.providers = tuple(providers)
        super().__init__(f"job is addressed to another provider: {', '.join(self.providers)}")


class UnsupportedKind(JobSkipped):
    """The event kind is not one of the request kinds this provider accepts."""

    def __init__(self, kind: int, accepted: Sequence[int]) -> None:
        self.kind = kind
        self.accepted = tuple(accepted)
        super().__init__(
            f"kind {kind} is not an accepted request kind ({', '.join(map(str, self.accepted))})"
        )


class ZapReceiptInvalid(NostrImagegenError):
    """A kind 9735 zap receipt that does not prove the payment asked for; ``reason`` says why
    (wrong signer, amount, description hash, event, payer, or a malformed bolt11)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ConfigError(NostrImagegenError):
    """An operator configuration file is missing, unreadable or invalid."""


class EngineError(NostrImagegenError):
    """Image generation failed; the engine stays usable for the next job."""


class JobCancelled(EngineError):
    """The job was cancelled (by the customer or at shutdown) between two denoising steps."""


class EngineUnavailable(EngineError):
    """The engine running a job went away mid-job (a Ray worker died, a GPU was lost): the job
    did not fail, and may run again on another engine."""


class ServiceError(NostrImagegenError):
    """An I/O step around a job failed."""


class FetchError(ServiceError):
    """An input image URL was refused (scheme, address, size, type) or could not be fetched."""


class UploadError(ServiceError):
    """No configured image host accepted the result."""


class RelayError(ServiceError):
    """A relay connection failed, or a relay refused or did not acknowledge an event."""


class LedgerError(ServiceError):
    """The job ledger could not be read or written."""


class PaymentError(ServiceError):
    """A payment backend (LNURL server, Lightning wallet, Cashu mint) failed or answered
    something unusable."""


class PaymentRefused(PaymentError):
    """The customer's payment is not accepted: a spent, short, malformed or foreign-mint Cashu
    token, for one. ``reason`` is written for the customer (it goes into `error` feedback)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
