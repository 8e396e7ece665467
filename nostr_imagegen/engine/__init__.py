"""The image engine: models and LoRAs from the operator's configuration, diffusers pipelines,
upscaling and encoding. Knows nothing about Nostr wire formats: a typed ``ImageJob`` in,
images out.

The public names of the engine layer are the ones ``__all__`` lists below; the modules under
``nostr_imagegen.engine`` are internal. Importing this package loads torch and diffusers
(the ``engine`` extra).

    from nostr_imagegen.engine import Engine, encode_result, load_engine_config

    config = load_engine_config("engine.toml")
    engine = Engine(config)
    plan = engine.plan(job)                       # raises JobRejected before any GPU time
    result = engine.generate(job)
    outcomes = engine.generate_batch([BatchRequest(job_a), BatchRequest(job_b)])  # one call
    files = encode_result(job, result, config.output)   # no job details in an encrypted job's file
"""

from nostr_imagegen.engine.batch import BatchRequest
from nostr_imagegen.engine.encode import EncodedImage, encode_image, encode_result, output_type
from nostr_imagegen.engine.generate import (
    Engine,
    EngineOffer,
    GenerationPlan,
    GenerationResult,
    OfferedLora,
    OfferedModel,
)
from nostr_imagegen.engine.quiet import quiet_libraries
from nostr_imagegen.engine.upscale import (
    LanczosUpscaler,
    SpandrelUpscaler,
    Upscaler,
    upscale_image,
)
from nostr_imagegen.engine_config import (
    CacheConfig,
    EngineConfig,
    EngineLimits,
    LoraConfig,
    ModelConfig,
    OutputConfig,
    RefineConfig,
    UpscalerConfig,
    is_local_path,
    load_engine_config,
)
from nostr_imagegen.errors import ConfigError, EngineError, JobCancelled

__all__ = [
    "BatchRequest",
    "CacheConfig",
    "ConfigError",
    "EncodedImage",
    "Engine",
    "EngineConfig",
    "EngineError",
    "EngineLimits",
    "EngineOffer",
    "GenerationPlan",
    "GenerationResult",
    "JobCancelled",
    "LanczosUpscaler",
    "LoraConfig",
    "ModelConfig",
    "OfferedLora",
    "OfferedModel",
    "OutputConfig",
    "RefineConfig",
    "SpandrelUpscaler",
    "Upscaler",
    "UpscalerConfig",
    "encode_image",
    "encode_result",
    "is_local_path",
    "load_engine_config",
    "output_type",
    "quiet_libraries",
    "upscale_image",
]
