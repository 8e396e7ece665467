"""nostr_imagegen: build Nostr Data Vending Machines (NIP-90, kind 5100) that generate images.

The public API is the names in ``__all__``; everything else is internal. Names are loaded on
first use, so ``import nostr_imagegen`` stays light: the engine (torch, diffusers) and the
service (websockets, httpx) are imported only when one of their names is touched.

    >>> from nostr_imagegen import Keys, parse_event, parse_image_job
    >>> job = parse_image_job(parse_event(request_json), provider=keys)
    >>> job.prompt, job.ratio, job.size
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nostr_imagegen.errors import (
    Bech32Error,
    ConfigError,
    EncryptionError,
    EngineError,
    EventError,
    FetchError,
    InvalidEventId,
    InvalidSignature,
    JobCancelled,
    JobRejected,
    JobSkipped,
    KeyFormatError,
    LedgerError,
    MessageError,
    NostrImagegenError,
    NotForThisProvider,
    RelayError,
    ServiceError,
    UnsupportedKind,
    UploadError,
)

__version__ = "0.1.0"

# Public name -> module that defines it. Loaded lazily by __getattr__ below.
_LAZY: dict[str, str] = {
    # Nostr events, keys, encryption (pure)
    "Event": "nostr_imagegen.nostr.event",
    "UnsignedEvent": "nostr_imagegen.nostr.event",
    "parse_event": "nostr_imagegen.nostr.event",
    "sign_event": "nostr_imagegen.nostr.event",
    "verify_event": "nostr_imagegen.nostr.event",
    "Keys": "nostr_imagegen.nostr.keys",
    "Signer": "nostr_imagegen.nostr.signer",
    "EncryptionScheme": "nostr_imagegen.nostr.encryption",
    "Filter": "nostr_imagegen.nostr.messages",
    "decode_relay_message": "nostr_imagegen.nostr.messages",
    # Image jobs (pure)
    "ImageJob": "nostr_imagegen.imagejob.model",
    "LoraRequest": "nostr_imagegen.imagejob.model",
    "Ratio": "nostr_imagegen.imagejob.model",
    "parse_image_job": "nostr_imagegen.imagejob.request",
    "JobLimits": "nostr_imagegen.imagejob.request",
    "ModelFamily": "nostr_imagegen.imagejob.dimensions",
    "Dimensions": "nostr_imagegen.imagejob.dimensions",
    "DimensionLimits": "nostr_imagegen.imagejob.dimensions",
    "resolve_dimensions": "nostr_imagegen.imagejob.dimensions",
    "JobStatus": "nostr_imagegen.imagejob.results",
    "ImageLink": "nostr_imagegen.imagejob.results",
    "build_result": "nostr_imagegen.imagejob.results",
    "build_feedback": "nostr_imagegen.imagejob.results",
    "build_handler_info": "nostr_imagegen.imagejob.results",
    "parse_cancellation": "nostr_imagegen.imagejob.results",
    # Engine (torch, diffusers)
    "Engine": "nostr_imagegen.engine.generate",
    "EngineConfig": "nostr_imagegen.engine.config",
    "load_engine_config": "nostr_imagegen.engine.config",
    "encode_image": "nostr_imagegen.engine.encode",
    # Service (websockets, httpx)
    "RelayPool": "nostr_imagegen.service.relay",
    "JobRunner": "nostr_imagegen.service.runner",
    "Ledger": "nostr_imagegen.service.ledger",
    "ServiceConfig": "nostr_imagegen.service.config",
    "load_service_config": "nostr_imagegen.service.config",
    "fetch_image": "nostr_imagegen.service.fetch",
    "FetchPolicy": "nostr_imagegen.service.fetch",
    "BlossomHost": "nostr_imagegen.service.upload",
    "Nip96Host": "nostr_imagegen.service.upload",
    "LocalFolderHost": "nostr_imagegen.service.upload",
    # Further building blocks for embedding programs
    "DEFAULT_JOB_LIMITS": "nostr_imagegen.imagejob.request",
    "InputResolver": "nostr_imagegen.imagejob.request",
    "job_dimensions": "nostr_imagegen.imagejob.dimensions",
    "Cancellation": "nostr_imagegen.imagejob.results",
    "ParsedResult": "nostr_imagegen.imagejob.results",
    "ParsedFeedback": "nostr_imagegen.imagejob.results",
    "parse_result": "nostr_imagegen.imagejob.results",
    "parse_feedback": "nostr_imagegen.imagejob.results",
    "GenerationResult": "nostr_imagegen.engine.generate",
    "ModelConfig": "nostr_imagegen.engine.config",
    "LoraConfig": "nostr_imagegen.engine.config",
    "EngineLimits": "nostr_imagegen.engine.config",
    "EncodedImage": "nostr_imagegen.engine.encode",
    "upscale_image": "nostr_imagegen.engine.upscale",
    "RunnerOptions": "nostr_imagegen.service.options",
    "Announcement": "nostr_imagegen.service.options",
    "PricingPolicy": "nostr_imagegen.service.seams",
    "PaymentCheck": "nostr_imagegen.service.seams",
    "PublishResult": "nostr_imagegen.service.relay",
    "JobClient": "nostr_imagegen.service.client",
    "JobOutcome": "nostr_imagegen.service.client",
    "build_request": "nostr_imagegen.service.client",
    "submit_job": "nostr_imagegen.service.client",
    "ImageHost": "nostr_imagegen.service.upload",
    "UploadedImage": "nostr_imagegen.service.upload",
    "upload_with_fallback": "nostr_imagegen.service.upload",
    "serve_folder": "nostr_imagegen.service.upload",
    "LocalRelay": "nostr_imagegen.service.localrelay",
    "load_keys": "nostr_imagegen.service.config",
}

__all__ = [
    "DEFAULT_JOB_LIMITS",
    "Announcement",
    "Bech32Error",
    "BlossomHost",
    "Cancellation",
    "ConfigError",
    "DimensionLimits",
    "Dimensions",
    "EncodedImage",
    "EncryptionError",
    "EncryptionScheme",
    "Engine",
    "EngineConfig",
    "EngineError",
    "EngineLimits",
    "Event",
    "EventError",
    "FetchError",
    "FetchPolicy",
    "Filter",
    "GenerationResult",
    "ImageHost",
    "ImageJob",
    "ImageLink",
    "InputResolver",
    "InvalidEventId",
    "InvalidSignature",
    "JobCancelled",
    "JobClient",
    "JobLimits",
    "JobOutcome",
    "JobRejected",
    "JobRunner",
    "JobSkipped",
    "JobStatus",
    "KeyFormatError",
    "Keys",
    "Ledger",
    "LedgerError",
    "LocalFolderHost",
    "LocalRelay",
    "LoraConfig",
    "LoraRequest",
    "MessageError",
    "ModelConfig",
    "ModelFamily",
    "Nip96Host",
    "NostrImagegenError",
    "NotForThisProvider",
    "ParsedFeedback",
    "ParsedResult",
    "PaymentCheck",
    "PricingPolicy",
    "PublishResult",
    "Ratio",
    "RelayError",
    "RelayPool",
    "RunnerOptions",
    "ServiceConfig",
    "ServiceError",
    "Signer",
    "UnsignedEvent",
    "UnsupportedKind",
    "UploadError",
    "UploadedImage",
    "__version__",
    "build_feedback",
    "build_handler_info",
    "build_request",
    "build_result",
    "decode_relay_message",
    "encode_image",
    "fetch_image",
    "job_dimensions",
    "load_engine_config",
    "load_keys",
    "load_service_config",
    "parse_cancellation",
    "parse_event",
    "parse_feedback",
    "parse_image_job",
    "parse_result",
    "resolve_dimensions",
    "serve_folder",
    "sign_event",
    "submit_job",
    "upload_with_fallback",
    "upscale_image",
    "verify_event",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from nostr_imagegen.engine.config import (
        EngineConfig,
        EngineLimits,
        LoraConfig,
        ModelConfig,
        load_engine_config,
    )
    from nostr_imagegen.engine.encode import EncodedImage, encode_image
    from nostr_imagegen.engine.generate import Engine, GenerationResult
    from nostr_imagegen.engine.upscale import upscale_image
    from nostr_imagegen.imagejob.dimensions import (
        DimensionLimits,
        Dimensions,
        ModelFamily,
        job_dimensions,
        resolve_dimensions,
    )
    from nostr_imagegen.imagejob.model import ImageJob, LoraRequest, Ratio
    from nostr_imagegen.imagejob.request import (
        DEFAULT_JOB_LIMITS,
        InputResolver,
        JobLimits,
        parse_image_job,
    )
    from nostr_imagegen.imagejob.results import (
        Cancellation,
        ImageLink,
        JobStatus,
        ParsedFeedback,
        ParsedResult,
        build_feedback,
        build_handler_info,
        build_result,
        parse_cancellation,
        parse_feedback,
        parse_result,
    )
    from nostr_imagegen.nostr.encryption import EncryptionScheme
    from nostr_imagegen.nostr.event import (
        Event,
        UnsignedEvent,
        parse_event,
        sign_event,
        verify_event,
    )
    from nostr_imagegen.nostr.keys import Keys
    from nostr_imagegen.nostr.messages import Filter, decode_relay_message
    from nostr_imagegen.nostr.signer import Signer
    from nostr_imagegen.service.client import JobClient, JobOutcome, build_request, submit_job
    from nostr_imagegen.service.config import ServiceConfig, load_keys, load_service_config
    from nostr_imagegen.service.fetch import FetchPolicy, fetch_image
    from nostr_imagegen.service.ledger import Ledger
    from nostr_imagegen.service.localrelay import LocalRelay
    from nostr_imagegen.service.options import Announcement, RunnerOptions
    from nostr_imagegen.service.relay import PublishResult, RelayPool
    from nostr_imagegen.service.runner import JobRunner
    from nostr_imagegen.service.seams import PaymentCheck, PricingPolicy
    from nostr_imagegen.service.upload import (
        BlossomHost,
        ImageHost,
        LocalFolderHost,
        Nip96Host,
        UploadedImage,
        serve_folder,
        upload_with_fallback,
    )


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'nostr_imagegen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
