"""The public API is a promise: these tests fail when a public name is added, removed, or
resolves to another module than the one that defines it today (httpx's exported-members test,
for our four public modules), and when the pure core stops being light.

Changing the API on purpose means changing ``PUBLIC`` below in the same commit: a reviewer
sees the promise change.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from types import ModuleType

import pytest

# Public module -> {public name: the module that defines it}.
PUBLIC: dict[str, dict[str, str]] = {
    "nostr_imagegen": {
        "EncryptionScheme": "nostr_imagegen.nostr.encryption",
        "Event": "nostr_imagegen.nostr.event",
        "EventError": "nostr_imagegen.errors",
        "Filter": "nostr_imagegen.nostr.messages",
        "ImageJob": "nostr_imagegen.imagejob.model",
        "ImageLink": "nostr_imagegen.imagejob.imeta",
        "JobLimits": "nostr_imagegen.imagejob.request",
        "JobRejected": "nostr_imagegen.errors",
        "JobSkipped": "nostr_imagegen.errors",
        "JobStatus": "nostr_imagegen.imagejob.feedback",
        "Keys": "nostr_imagegen.nostr.keys",
        "LoraRequest": "nostr_imagegen.imagejob.model",
        "ModelFamily": "nostr_imagegen.imagejob.dimensions",
        "NostrImagegenError": "nostr_imagegen.errors",
        "ParsedFeedback": "nostr_imagegen.imagejob.feedback",
        "Ratio": "nostr_imagegen.imagejob.model",
        "Signer": "nostr_imagegen.nostr.signer",
        "UnsignedEvent": "nostr_imagegen.nostr.event",
        "build_feedback": "nostr_imagegen.imagejob.feedback",
        "build_handler_info": "nostr_imagegen.imagejob.handler_info",
        "build_result": "nostr_imagegen.imagejob.results",
        "decrypt": "nostr_imagegen.nostr.encryption",
        "encrypt": "nostr_imagegen.nostr.encryption",
        "job_dimensions": "nostr_imagegen.imagejob.dimensions",
        "parse_cancellation": "nostr_imagegen.imagejob.cancellation",
        "parse_event": "nostr_imagegen.nostr.event",
        "parse_feedback": "nostr_imagegen.imagejob.feedback",
        "parse_image_job": "nostr_imagegen.imagejob.request",
        "parse_result": "nostr_imagegen.imagejob.results",
        "sign_event": "nostr_imagegen.nostr.event",
    },
    "nostr_imagegen.engine": {
        "BatchRequest": "nostr_imagegen.engine.batch",
        "CacheConfig": "nostr_imagegen.engine_config",
        "ConfigError": "nostr_imagegen.errors",
        "EncodedImage": "nostr_imagegen.engine.encode",
        "Engine": "nostr_imagegen.engine.generate",
        "EngineConfig": "nostr_imagegen.engine_config",
        "EngineError": "nostr_imagegen.errors",
        "EngineLimits": "nostr_imagegen.engine_config",
        "EngineOffer": "nostr_imagegen.engine.planner",
        "GenerationPlan": "nostr_imagegen.engine.planner",
        "GenerationResult": "nostr_imagegen.engine.generate",
        "JobCancelled": "nostr_imagegen.errors",
        "LanczosUpscaler": "nostr_imagegen.engine.upscale",
        "LoraConfig": "nostr_imagegen.engine_config",
        "ModelConfig": "nostr_imagegen.engine_config",
        "OfferedLora": "nostr_imagegen.engine.planner",
        "OfferedModel": "nostr_imagegen.engine.planner",
        "OutputConfig": "nostr_imagegen.engine_config",
        "SpandrelUpscaler": "nostr_imagegen.engine.upscale",
        "Upscaler": "nostr_imagegen.engine.upscale",
        "UpscalerConfig": "nostr_imagegen.engine_config",
        "RefineConfig": "nostr_imagegen.engine_config",
        "encode_image": "nostr_imagegen.engine.encode",
        "encode_result": "nostr_imagegen.engine.encode",
        "is_local_path": "nostr_imagegen.engine_config",
        "load_engine_config": "nostr_imagegen.engine_config",
        "output_type": "nostr_imagegen.engine.encode",
        "quiet_libraries": "nostr_imagegen.engine.quiet",
        "upscale_image": "nostr_imagegen.engine.upscale",
    },
    "nostr_imagegen.service": {
        "ChainResolver": "nostr_imagegen.service.chaining",
        "JsonFormatter": "nostr_imagegen.service.logging_json",
        "MetricsConfig": "nostr_imagegen.service.metrics.config",
        "OpsServer": "nostr_imagegen.service.metrics.server",
        "ServiceMetrics": "nostr_imagegen.service.metrics.observer",
        "PolicyConfig": "nostr_imagegen.service.policy.config",
        "PromptPolicy": "nostr_imagegen.service.policy.prompt",
        "WordListPolicy": "nostr_imagegen.service.policy.prompt",
        "Refusal": "nostr_imagegen.service.policy.gate",
        "RequestPolicy": "nostr_imagegen.service.policy.gate",
        "ConfigPricing": "nostr_imagegen.service.payment.pricing",
        "Invoice": "nostr_imagegen.service.payment.backend",
        "InvoiceBackend": "nostr_imagegen.service.payment.backend",
        "LnbitsBackend": "nostr_imagegen.service.payment.lnbits",
        "LnbitsPayer": "nostr_imagegen.service.payment.lnbits",
        "NwcBackend": "nostr_imagegen.service.payment.nwc",
        "NwcPayer": "nostr_imagegen.service.payment.nwc",
        "Payer": "nostr_imagegen.service.client",
        "PaymentError": "nostr_imagegen.errors",
        "PaymentRefused": "nostr_imagegen.errors",
        "PaymentSettings": "nostr_imagegen.service.payment.flow",
        "decode_invoice": "nostr_imagegen.service.payment.backend",
        "Announcement": "nostr_imagegen.service.options",
        "CashuRedeemer": "nostr_imagegen.service.payment.cashu",
        "CashuRedemption": "nostr_imagegen.service.payment.cashu",
        "ZapPayment": "nostr_imagegen.imagejob.zaps",
        "ZapReceiptInvalid": "nostr_imagegen.errors",
        "ZapWatcher": "nostr_imagegen.service.payment.zaps",
        "build_zap_request": "nostr_imagegen.imagejob.zaps",
        "fetch_lnurl_pubkey": "nostr_imagegen.service.payment.zaps",
        "AuthChallenge": "nostr_imagegen.nostr.session",
        "AuthResult": "nostr_imagegen.nostr.session",
        "BlossomHost": "nostr_imagegen.service.upload.blossom",
        "ClientPoolLike": "nostr_imagegen.service.seams",
        "EndOfStoredEvents": "nostr_imagegen.nostr.session",
        "EngineLike": "nostr_imagegen.service.seams",
        "PlannerLike": "nostr_imagegen.service.seams",
        "EncodeSettings": "nostr_imagegen.service.slots",
        "EngineSlot": "nostr_imagegen.service.slots",
        "EngineTask": "nostr_imagegen.service.slots",
        "LocalSlot": "nostr_imagegen.service.localslot",
        "SchedulerSettings": "nostr_imagegen.service.scaling",
        "EventReceived": "nostr_imagegen.nostr.session",
        "FetchError": "nostr_imagegen.errors",
        "FetchPolicy": "nostr_imagegen.service.fetch",
        "FetchedImage": "nostr_imagegen.service.fetch",
        "GenerationLike": "nostr_imagegen.service.seams",
        "Happening": "nostr_imagegen.nostr.session",
        "ImageHost": "nostr_imagegen.service.upload.host",
        "JobClient": "nostr_imagegen.service.client",
        "JobOutcome": "nostr_imagegen.service.client",
        "JobRecord": "nostr_imagegen.service.ledger",
        "JobRunner": "nostr_imagegen.service.runner",
        "JobState": "nostr_imagegen.service.ledger",
        "Ledger": "nostr_imagegen.service.ledger",
        "LedgerError": "nostr_imagegen.errors",
        "LocalFolderHost": "nostr_imagegen.service.upload.localfolder",
        "LocalRelay": "nostr_imagegen.service.localrelay",
        "NamedOffer": "nostr_imagegen.service.seams",
        "Nip96Host": "nostr_imagegen.service.upload.nip96",
        "Notice": "nostr_imagegen.nostr.session",
        "OfferLike": "nostr_imagegen.service.seams",
        "PaymentCheck": "nostr_imagegen.service.seams",
        "PricingPolicy": "nostr_imagegen.service.seams",
        "PublishAcked": "nostr_imagegen.nostr.session",
        "PublishOutcome": "nostr_imagegen.service.seams",
        "PublishResult": "nostr_imagegen.service.relay.publish",
        "RelayAuth": "nostr_imagegen.nostr.messages",
        "RelayClosed": "nostr_imagegen.nostr.messages",
        "RelayEose": "nostr_imagegen.nostr.messages",
        "RelayError": "nostr_imagegen.errors",
        "RelayEvent": "nostr_imagegen.nostr.messages",
        "RelayMessage": "nostr_imagegen.nostr.messages",
        "RelayNotice": "nostr_imagegen.nostr.messages",
        "RelayOk": "nostr_imagegen.nostr.messages",
        "RelayOutcome": "nostr_imagegen.service.relay.publish",
        "RelayPool": "nostr_imagegen.service.relay.pool",
        "RelayPoolLike": "nostr_imagegen.service.seams",
        "RelaySession": "nostr_imagegen.nostr.session",
        "RelayStatus": "nostr_imagegen.service.relay.link",
        "RunnerOptions": "nostr_imagegen.service.options",
        "RunnerStats": "nostr_imagegen.service.options",
        "ServiceConfig": "nostr_imagegen.service.config",
        "ServiceError": "nostr_imagegen.errors",
        "SubscriptionClosed": "nostr_imagegen.nostr.session",
        "UploadError": "nostr_imagegen.errors",
        "UploadedImage": "nostr_imagegen.service.upload.host",
        "build_request": "nostr_imagegen.service.client",
        "decode_relay_message": "nostr_imagegen.nostr.messages",
        "encode_auth": "nostr_imagegen.nostr.messages",
        "encode_close": "nostr_imagegen.nostr.messages",
        "encode_event": "nostr_imagegen.nostr.messages",
        "encode_req": "nostr_imagegen.nostr.messages",
        "fetch_image": "nostr_imagegen.service.fetch",
        "load_engine_part": "nostr_imagegen.service.config",
        "load_keys": "nostr_imagegen.service.config",
        "load_service_config": "nostr_imagegen.service.config",
        "serve": "nostr_imagegen.service.app",
        "serve_folder": "nostr_imagegen.service.folderserver",
        "submit_job": "nostr_imagegen.service.client",
        "upload_with_fallback": "nostr_imagegen.service.upload.host",
    },
    "nostr_imagegen.testing": {
        "TINY_NATIVE_SIZE": "nostr_imagegen.testing.pipelines",
        "WIDER_NATIVE_SIZE": "nostr_imagegen.testing.pipelines",
        "build_tiny_family": "nostr_imagegen.testing.families",
        "build_tiny_family_lora": "nostr_imagegen.testing.families",
        "build_tiny_lora": "nostr_imagegen.testing.loras",
        "build_tiny_pipeline": "nostr_imagegen.testing.pipelines",
        "save_single_file_checkpoint": "nostr_imagegen.testing.single_file",
        "tiny_tokenizer": "nostr_imagegen.testing.pipelines",
        "write_tiny_config": "nostr_imagegen.testing.config",
    },
}

HEAVY = ("torch", "diffusers", "transformers", "websockets", "httpx", "peft")


def _defining_module(module: ModuleType, name: str) -> str:
    """Where ``name`` comes from: the module whose import statement brought it in."""
    value = getattr(module, name)
    home = getattr(value, "__module__", None)
    if isinstance(home, str) and getattr(importlib.import_module(home), name, None) is value:
        return home
    # Constants and aliases carry no __module__: find the one internal module holding them.
    for candidate in PUBLIC[module.__name__].values():
        if getattr(importlib.import_module(candidate), name, None) is value:
            return candidate
    return "?"


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_all_lists_exactly_the_promised_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert len(module.__all__) == len(set(module.__all__)), "a name is listed twice"
    assert sorted(module.__all__) == sorted(PUBLIC[module_name])


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_every_public_member_is_listed(module_name: str) -> None:
    # httpx's rule: a module's public-looking members are exactly its __all__.
    module = importlib.import_module(module_name)
    members = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert members == set(module.__all__)


@pytest.mark.parametrize(
    ("module_name", "name"),
    [(module, name) for module, names in sorted(PUBLIC.items()) for name in sorted(names)],
)
def test_each_name_resolves_to_its_defining_module(module_name: str, name: str) -> None:
    module = importlib.import_module(module_name)
    assert _defining_module(module, name) == PUBLIC[module_name][name]


def test_the_core_is_small() -> None:
    import nostr_imagegen

    assert len(nostr_imagegen.__all__) <= 30


def _modules_loaded_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return list(json.loads(out.strip().splitlines()[-1]))


def test_the_core_is_light() -> None:
    loaded = _modules_loaded_after("import nostr_imagegen\nfrom nostr_imagegen import *")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]
    assert "nostr_imagegen.engine" not in loaded
    assert "nostr_imagegen.service" not in loaded
    assert "nostr_imagegen.testing" not in loaded


def test_the_service_does_not_load_the_engine() -> None:
    loaded = _modules_loaded_after("import nostr_imagegen.service")
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "diffusers", "transformers")]


def test_unknown_attribute_is_an_attribute_error() -> None:
    import nostr_imagegen

    with pytest.raises(AttributeError):
        _ = nostr_imagegen.no_such_name  # type: ignore[attr-defined]
