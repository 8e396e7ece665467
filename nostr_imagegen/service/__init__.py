"""The DVM service: relays, the job runner, its ledger, image hosting and input fetching.

The public names of the service layer are the ones ``__all__`` lists below; the modules
under ``nostr_imagegen.service`` are internal. Importing this package loads websockets and
httpx (the ``service`` extra), never torch: the engine is loaded only when a runner is given
one or ``serve`` builds it.

    from nostr_imagegen import Keys
    from nostr_imagegen.service import JobRunner, Ledger, LocalFolderHost, RelayPool

    async with RelayPool(["wss://relay.example"], keys=keys) as pool:
        runner = JobRunner(keys=keys, pool=pool, engine=engine, ledger=Ledger(path),
                           hosts=[LocalFolderHost(folder, "https://img.example")])
        await runner.run()

The relay wire layer underneath ``RelayPool`` is sans-I/O and pure (``RelaySession``, the
``encode_*`` functions, ``decode_relay_message`` and the message types): it is listed here
because it is the relay protocol, and a program with its own sockets can drive it.
"""

from nostr_imagegen.errors import (
    FetchError,
    LedgerError,
    PaymentError,
    PaymentRefused,
    RelayError,
    ServiceError,
    UploadError,
    ZapReceiptInvalid,
)
from nostr_imagegen.imagejob.zaps import ZapPayment, build_zap_request
from nostr_imagegen.nostr.messages import (
    RelayAuth,
    RelayClosed,
    RelayEose,
    RelayEvent,
    RelayMessage,
    RelayNotice,
    RelayOk,
    decode_relay_message,
    encode_auth,
    encode_close,
    encode_event,
    encode_req,
)
from nostr_imagegen.nostr.session import (
    AuthChallenge,
    AuthResult,
    EndOfStoredEvents,
    EventReceived,
    Happening,
    Notice,
    PublishAcked,
    RelaySession,
    SubscriptionClosed,
)
from nostr_imagegen.service.app import serve
from nostr_imagegen.service.chaining import ChainResolver
from nostr_imagegen.service.client import JobClient, JobOutcome, Payer, build_request, submit_job
from nostr_imagegen.service.config import (
    ServiceConfig,
    load_engine_part,
    load_keys,
    load_service_config,
)
from nostr_imagegen.service.fetch import FetchedImage, FetchPolicy, fetch_image
from nostr_imagegen.service.ledger import JobRecord, JobState, Ledger
from nostr_imagegen.service.localrelay import LocalRelay
from nostr_imagegen.service.localslot import LocalSlot
from nostr_imagegen.service.logging_json import JsonFormatter
from nostr_imagegen.service.metrics import MetricsConfig, OpsServer, ServiceMetrics
from nostr_imagegen.service.options import Announcement, RunnerOptions, RunnerStats
from nostr_imagegen.service.payment.backend import Invoice, InvoiceBackend, decode_invoice
from nostr_imagegen.service.payment.cashu import CashuRedeemer, CashuRedemption
from nostr_imagegen.service.payment.flow import PaymentSettings
from nostr_imagegen.service.payment.lnbits import LnbitsBackend, LnbitsPayer
from nostr_imagegen.service.payment.nwc import NwcBackend, NwcPayer
from nostr_imagegen.service.payment.pricing import ConfigPricing
from nostr_imagegen.service.payment.zaps import ZapWatcher, fetch_lnurl_pubkey
from nostr_imagegen.service.policy import (
    PolicyConfig,
    PromptPolicy,
    Refusal,
    RequestPolicy,
    WordListPolicy,
)
from nostr_imagegen.service.relay import PublishResult, RelayOutcome, RelayPool, RelayStatus
from nostr_imagegen.service.runner import JobRunner
from nostr_imagegen.service.scaling import SchedulerSettings
from nostr_imagegen.service.seams import (
    ClientPoolLike,
    EngineLike,
    GenerationLike,
    NamedOffer,
    OfferLike,
    PaymentCheck,
    PlannerLike,
    PricingPolicy,
    PublishOutcome,
    RelayPoolLike,
)
from nostr_imagegen.service.slots import EncodeSettings, EngineSlot, EngineTask
from nostr_imagegen.service.upload import (
    BlossomHost,
    ImageHost,
    LocalFolderHost,
    Nip96Host,
    UploadedImage,
    serve_folder,
    upload_with_fallback,
)

__all__ = [
    "Announcement",
    "AuthChallenge",
    "AuthResult",
    "BlossomHost",
    "CashuRedeemer",
    "CashuRedemption",
    "ChainResolver",
    "ClientPoolLike",
    "ConfigPricing",
    "EncodeSettings",
    "EndOfStoredEvents",
    "EngineLike",
    "EngineSlot",
    "EngineTask",
    "EventReceived",
    "FetchError",
    "FetchPolicy",
    "FetchedImage",
    "GenerationLike",
    "Happening",
    "ImageHost",
    "Invoice",
    "InvoiceBackend",
    "JobClient",
    "JobOutcome",
    "JobRecord",
    "JobRunner",
    "JobState",
    "JsonFormatter",
    "Ledger",
    "LedgerError",
    "LnbitsBackend",
    "LnbitsPayer",
    "LocalFolderHost",
    "LocalRelay",
    "LocalSlot",
    "MetricsConfig",
    "NamedOffer",
    "Nip96Host",
    "Notice",
    "NwcBackend",
    "NwcPayer",
    "OfferLike",
    "OpsServer",
    "Payer",
    "PaymentCheck",
    "PaymentError",
    "PaymentRefused",
    "PaymentSettings",
    "PlannerLike",
    "PolicyConfig",
    "PricingPolicy",
    "PromptPolicy",
    "PublishAcked",
    "PublishOutcome",
    "PublishResult",
    "Refusal",
    "RelayAuth",
    "RelayClosed",
    "RelayEose",
    "RelayError",
    "RelayEvent",
    "RelayMessage",
    "RelayNotice",
    "RelayOk",
    "RelayOutcome",
    "RelayPool",
    "RelayPoolLike",
    "RelaySession",
    "RelayStatus",
    "RequestPolicy",
    "RunnerOptions",
    "RunnerStats",
    "SchedulerSettings",
    "ServiceConfig",
    "ServiceError",
    "ServiceMetrics",
    "SubscriptionClosed",
    "UploadError",
    "UploadedImage",
    "WordListPolicy",
    "ZapPayment",
    "ZapReceiptInvalid",
    "ZapWatcher",
    "build_request",
    "build_zap_request",
    "decode_invoice",
    "decode_relay_message",
    "encode_auth",
    "encode_close",
    "encode_event",
    "encode_req",
    "fetch_image",
    "fetch_lnurl_pubkey",
    "load_engine_part",
    "load_keys",
    "load_service_config",
    "serve",
    "serve_folder",
    "submit_job",
    "upload_with_fallback",
]
