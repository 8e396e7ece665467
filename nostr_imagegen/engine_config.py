"""The operator's engine configuration: which models and LoRAs are offered, and the limits.

It lives beside the engine package rather than in it because it is pure (pydantic, no
torch): the service configuration extends it and the CLI reads it without loading torch and
diffusers, which importing ``nostr_imagegen.engine`` does. Embedders import its public names
from ``nostr_imagegen.engine``.

Read from TOML (``load_engine_config``) or from an already parsed mapping
(``EngineConfig.from_mapping``, for a service configuration that embeds these fields)::

    device = "cuda"                          # optional: cuda, cuda:1, mps, cpu (default: best)
    dtype = "float16"                        # optional: float16, bfloat16, float32

    [models.sdxl-turbo]
    source = "stabilityai/sdxl-turbo"        # hub id, local folder, or one .safetensors/.ckpt
    family = "sdxl"                          # sd15 sd2 sdxl sd3 flux flux2 qwenimage zimage
                                             # sana chroma (docs/engine.md: what each takes)
    default = true                           # at most one; else the first model is the default
    steps = 4
    guidance_scale = 0.0
    ignore_unsupported = ["negative_prompt"] # drop what the model cannot apply, not refuse

    samplers = ["euler_a", "dpmpp_2m_karras"]   # optional: the samplers requests may name
    default_sampler = "euler_a"              # optional: else the model's own scheduler
    max_images = 4                           # ["param", "num_images", "N"] up to this
    dtype = "bfloat16"                       # optional: this model's precision
    vae_tiling = true                        # memory and speed options: docs/engine.md

    [models.sdxl-turbo.refine]               # optional: a refining upscale ("hires fix")
    upscaler = "lanczos"                     # or "learned": the [upscaler] model
    strength = 0.3
    steps = 20

    [loras.pixel-art]
    source = "/srv/loras/pixel.safetensors"
    family = "sdxl"
    weight = 0.8                             # used when the request gives no weight

    [limits]
    max_steps = 50
    max_pixels = 1048576                     # generated width * height

    [cache]
    max_models = 2                           # pipelines kept loaded (least recently used go)

    [upscaler]
    kind = "lanczos"                         # or "spandrel" with source = a .pth/.safetensors

    [output]
    default_format = "png"

Names (the table keys) are what customers put in ``["param", "model", NAME]`` and
``["param", "lora", NAME]``: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter
or digit, never holding '..' (``nostr_imagegen.imagejob.model.NAME_PATTERN``, the same rule the
request parser applies, so every name offered can be asked for). A request never names a path
or a hub repository: only these names.

Sources starting with ``./`` or ``../`` are relative to the configuration file. A source that
is a local path (``is_local_path``) must exist when the configuration is loaded: a missing
model folder is a ``ConfigError`` at start-up, not a hub lookup at the first job. Unknown keys
are errors; every error is a ``ConfigError`` naming the file and the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from nostr_imagegen.errors import ConfigError
from nostr_imagegen.imagejob.dimensions import DimensionLimits, ModelFamily
from nostr_imagegen.imagejob.model import NAME_PATTERN, NAME_RULE, is_valid_name
from nostr_imagegen.sampler_names import SAMPLER_NAMES

__all__ = [
    "NAME_PATTERN",
    "SCHEDULERS",
    "SINGLE_FILE_SUFFIXES",
    "CacheConfig",
    "EngineConfig",
    "EngineLimits",
    "LoraConfig",
    "ModelConfig",
    "OutputConfig",
    "RefineConfig",
    "UpscalerConfig",
    "is_local_path",
    "is_single_file",
    "load_engine_config",
    "read_config_file",
]

#: A model source ending in one of these is loaded with ``from_single_file``.
SINGLE_FILE_SUFFIXES: Final = (".safetensors", ".ckpt")

#: diffusers scheduler classes a model may be switched to (``scheduler = "..."``).
SCHEDULERS: Final = frozenset(
    {
        "DDIMScheduler",
        "DDPMScheduler",
        "DEISMultistepScheduler",
        "DPMSolverMultistepScheduler",
        "DPMSolverSDEScheduler",
        "DPMSolverSinglestepScheduler",
        "EulerAncestralDiscreteScheduler",
        "EulerDiscreteScheduler",
        "HeunDiscreteScheduler",
        "KDPM2AncestralDiscreteScheduler",
        "KDPM2DiscreteScheduler",
        "LCMScheduler",
        "LMSDiscreteScheduler",
        "PNDMScheduler",
        "TCDScheduler",
        "UniPCMultistepScheduler",
    }
)

_DEVICE_RE: Final = re.compile(r"cpu|mps|cuda(:[0-9]{1,2})?")

#: A Hugging Face hub repository id: ``name`` or ``owner/name`` (huggingface_hub's rules).
_HUB_ID_RE: Final = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?", re.ASCII)
#: How a local path starts: absolute, the home folder, relative to the configuration file
#: (and the same on Windows: ``.\``, ``..\``, ``C:\`` or ``C:/``, ``\\server``).
_LOCAL_PREFIX_RE: Final = re.compile(r"(/|~|\.{1,2}[/\\]|[A-Za-z]:[/\\]|\\\\)")
#: Links diffusers' single-file loader resolves on the hub rather than on this disk.
_REMOTE_PREFIXES: Final = ("http://", "https://", "hf.co/", "huggingface.co/")

Source = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4096)]
DType = Literal["float16", "fp16", "bfloat16", "bf16", "float32", "fp32"]
#: Quantized loading of the denoiser (``nostr_imagegen.engine.memory``): bitsandbytes NF4 or
#: 8-bit, torchao int8 weight-only, or a GGUF file (``gguf_file``) for the transformer.
Quantization = Literal["bnb-4bit", "bnb-8bit", "torchao-int8", "gguf"]
#: Largest ``max_images`` a model may allow in one job.
MAX_IMAGES_PER_JOB: Final = 16
#: Request params a model may be configured to ignore when its family cannot apply them.
IgnorableParam = Literal["negative_prompt", "guidance_scale"]


def is_single_file(source: str) -> bool:
    """True when ``source`` names one checkpoint file (loaded with ``from_single_file``)."""
    return source.lower().endswith(SINGLE_FILE_SUFFIXES)


def is_local_path(source: str) -> bool:
    """True when ``source`` names a place on this machine rather than a hub repository.

    Local::

        /srv/models/sd15   ~/models/sd15   ./sd15   ../models/sd15   C:\\models\\sd15
        dreamshaper_8.safetensors   loras/pixel.ckpt                   (one checkpoint file)
        models/sd15/v2                                                 (a separator, not owner/name)

    Hub (never looked up while loading a configuration)::

        stabilityai/sdxl-turbo   gpt2   https://huggingface.co/.../x.safetensors

    A bare name without a separator is a hub id (root-level repositories exist): write
    ``./name`` for a folder in the configuration's own folder.
    """
    if source.startswith(_REMOTE_PREFIXES):
        return False
    if _LOCAL_PREFIX_RE.match(source) or is_single_file(source):
        return True
    return not _HUB_ID_RE.fullmatch(source)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: The largest ``max_batch`` a model may set.
MAX_BATCH: Final = 16


class RefineConfig(_Section):
    """A refining upscale (A1111's "hires fix") for a model: the generated image is
    upscaled, then redrawn by an img2img pass at low strength with the same prompt.
    ``[models.X.refine]``; used for the ``upscale`` param and for a ``size`` beyond the
    model's native pixel budget."""

    #: ``lanczos``, or ``learned``: the engine's ``[upscaler]`` model (kind ``spandrel``).
    upscaler: Literal["lanczos", "learned"] = "lanczos"
    #: img2img strength of the refine pass: how much of the upscaled image is redrawn.
    strength: float = Field(default=0.3, gt=0.0, le=1.0)
    #: Steps of the refine pass before strength (diffusers runs ``int(steps * strength)``);
    #: None: the job's steps.
    steps: int | None = Field(default=None, ge=1, le=1000)


class ModelConfig(_Section):
    """One model customers may ask for by name."""

    #: Hub id (``stabilityai/sdxl-turbo``), local diffusers folder, or one checkpoint file.
    source: Source
    family: ModelFamily
    #: The model used when a request names none (at most one per configuration).
    default: bool = False
    #: Denoising steps when the request gives none (else 30 for full models).
    steps: int | None = Field(default=None, ge=1, le=1000)
    #: Classifier-free guidance when the request gives none (0 turns it off, for turbo models).
    guidance_scale: float | None = Field(default=None, ge=0.0, le=100.0)
    #: img2img strength when the request gives none (else 0.75).
    strength: float | None = Field(default=None, gt=0.0, le=1.0)
    #: A diffusers scheduler class name to use instead of the one the model ships with.
    scheduler: str | None = None
    #: The side length the model was trained at, when it is not the family's usual one.
    native_size: int | None = Field(default=None, ge=64, le=8192, multiple_of=8)
    #: For a single-file source: a local diffusers folder (or hub id) holding the component
    #: configs, so loading needs no network. Without it diffusers fetches them from the hub.
    single_file_config: Source | None = None
    #: Weight file variant to load from a hub id or folder (``fp16``).
    variant: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    #: The samplers (``nostr_imagegen.sampler_names``) requests may name; None: all.
    samplers: tuple[str, ...] | None = Field(default=None, min_length=1)
    #: The sampler of jobs that name none; None: the model's own scheduler.
    default_sampler: str | None = None
    #: Most images one job may ask for (``["param", "num_images", "N"]``).
    max_images: int = Field(default=4, ge=1, le=MAX_IMAGES_PER_JOB)
    #: Most queued jobs one pipeline call generates together (same size, steps, guidance,
    #: sampler and LoRAs; text-to-image). 1: each job alone. Memory grows with it.
    max_batch: int = Field(default=1, ge=1, le=MAX_BATCH)
    #: A refining upscale for this model (``[models.X.refine]``); None: plain upscaling.
    refine: RefineConfig | None = None
    # Memory and speed (applied on load by ``nostr_imagegen.engine.memory``).
    #: This model's precision, over the engine's ``dtype``.
    dtype: DType | None = None
    #: ``model``: each component on the GPU only while it runs; ``sequential``: each layer
    #: (least memory, slowest). Needs accelerate and a CUDA device.
    offload: Literal["model", "sequential"] | None = None
    #: Decode large images in tiles / a batch one image at a time (bounds VAE memory).
    vae_tiling: bool = False
    vae_slicing: bool = False
    #: A diffusers attention backend for the denoiser (``native``, ``flash``, ``sage``...).
    attention_backend: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,40}$")
    #: Compile the denoiser with ``torch.compile`` when the model is loaded.
    compile: bool = False
    #: Load the denoiser quantized; the package it needs must be installed.
    quantization: Quantization | None = None
    #: For ``quantization = "gguf"``: the transformer as one ``.gguf`` file; the other
    #: components come from ``source``.
    gguf_file: Source | None = None
    #: FLUX.1 only: the "true CFG" scale of a second pass that applies a negative prompt
    #: (above 1; twice the compute). Without it a FLUX.1 model refuses negative prompts.
    true_cfg_scale: float | None = Field(default=None, gt=1.0, le=100.0)
    #: Request params this model cannot apply that are dropped instead of refusing the job
    #: (``ignore_unsupported = ["negative_prompt"]``); the NIP-89 announcement lists them.
    ignore_unsupported: tuple[IgnorableParam, ...] = ()

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str | None) -> str | None:
        if value is not None and value not in SCHEDULERS:
            raise ValueError(
                f"unknown scheduler {value!r}; use one of {', '.join(sorted(SCHEDULERS))}"
            )
        return value

    @field_validator("samplers")
    @classmethod
    def _known_samplers(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if name not in SAMPLER_NAMES:
                raise ValueError(
                    f"unknown sampler {name!r}; use some of {', '.join(SAMPLER_NAMES)}"
                )
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a sampler is listed twice")
        return value

    @model_validator(mode="after")
    def _default_sampler_offered(self) -> Self:
        name = self.default_sampler
        if name is None:
            return self
        offered = self.samplers if self.samplers is not None else SAMPLER_NAMES
        if name not in offered:
            raise ValueError(
                f"default_sampler {name!r} is not among the samplers offered ({', '.join(offered)})"
            )
        if self.scheduler is not None:
            raise ValueError("give either scheduler or default_sampler, not both")
        return self

    @model_validator(mode="after")
    def _gguf_file_with_gguf(self) -> Self:
        if (self.quantization == "gguf") != (self.gguf_file is not None):
            raise ValueError('quantization = "gguf" and gguf_file go together')
        if self.gguf_file is not None and not self.gguf_file.lower().endswith(".gguf"):
            raise ValueError(f"gguf_file {self.gguf_file!r} is not a .gguf file")
        return self

    @model_validator(mode="after")
    def _single_file_config_needs_single_file(self) -> Self:
        if self.single_file_config is not None and not self.single_file:
            raise ValueError(
                "single_file_config is only for a source that is one "
                f"{' or '.join(SINGLE_FILE_SUFFIXES)} file"
            )
        return self

    @property
    def single_file(self) -> bool:
        """True when the source is one checkpoint file."""
        return is_single_file(self.source)


class LoraConfig(_Section):
    """One LoRA customers may ask for by name."""

    #: A ``.safetensors`` file, a folder holding ``pytorch_lora_weights.safetensors``, or a hub id.
    source: Source
    #: The model family it was trained for; it is only applied to models of that family.
    family: ModelFamily
    #: Weight used when the request gives none.
    weight: float = Field(default=1.0, ge=-10.0, le=10.0)


class EngineLimits(_Section):
    """Bounds on what one request may ask for; anything beyond is rejected, not clamped.

    The size fields are the ones ``imagejob.dimensions.DimensionLimits`` holds, and the
    engine sizes every job with ``job_dimensions(job, ..., limits=self.dimension_limits())``:
    one rule, so ``Engine.plan`` and ``job_dimensions`` under these limits always agree.
    Only the defaults differ: ``DimensionLimits()``, what ``job_dimensions`` applies when
    given no limits, admits 2048x2048 (4,194,304) generated pixels; an engine admits
    1024x1024 (1,048,576, SDXL's native square) unless ``[limits] max_pixels`` says more. A
    program that sizes an engine's jobs itself passes ``config.limits.dimension_limits()``
    rather than relying on either default. ``max_upscale`` and ``max_output_side`` bound the
    upscaler the same way (``upscale_image(max_factor=max_upscale,
    max_pixels=max_output_side ** 2)``); its own defaults (4x, 4096x4096) are for direct calls.
    """

    max_steps: int = Field(default=50, ge=1, le=1000)
    #: Largest generated image, in pixels (width * height), before upscaling.
    max_pixels: int = Field(default=1024 * 1024, ge=64 * 64)
    #: Largest side of a generated image, in pixels.
    max_side: int = Field(default=2048, ge=64)
    #: Smallest side of a generated image, in pixels.
    min_side: int = Field(default=64, ge=8)
    #: Largest upscaling factor.
    max_upscale: float = Field(default=4.0, ge=1.0, le=8.0)
    #: Largest side of the delivered (upscaled) image, in pixels.
    max_output_side: int = Field(default=8192, ge=64)
    max_loras: int = Field(default=3, ge=0, le=16)
    #: LoRA weights must lie within ``[-max_lora_weight, max_lora_weight]``.
    max_lora_weight: float = Field(default=2.0, ge=0.0, le=10.0)
    max_guidance_scale: float = Field(default=30.0, ge=0.0, le=100.0)

    @model_validator(mode="after")
    def _sides_consistent(self) -> Self:
        if self.min_side > self.max_side:
            raise ValueError(f"min_side ({self.min_side}) is above max_side ({self.max_side})")
        return self

    def dimension_limits(self) -> DimensionLimits:
        """The part of these limits that bounds image sizes."""
        return DimensionLimits(
            min_side=self.min_side,
            max_side=self.max_side,
            max_pixels=self.max_pixels,
            max_upscale=self.max_upscale,
            max_output_side=self.max_output_side,
        )


class CacheConfig(_Section):
    """How many pipelines stay loaded; the least recently used one goes first."""

    max_models: int = Field(default=2, ge=1, le=64)
    #: Optional budget for the weights of all loaded pipelines, in MiB (estimated from
    #: parameter sizes). The model in use is kept even when it alone exceeds the budget.
    max_memory_mb: int | None = Field(default=None, ge=1)


class UpscalerConfig(_Section):
    """How images are enlarged when a request asks for ``upscale``."""

    kind: Literal["lanczos", "spandrel"] = "lanczos"
    #: For ``spandrel``: the model file (Real-ESRGAN and friends, ``.pth`` or ``.safetensors``).
    source: Source | None = None
    #: Tiles of this many pixels are upscaled one at a time (bounds memory).
    tile_size: int = Field(default=512, ge=32, le=4096)
    #: Factor applied when the request asks for none (None: no upscaling by default).
    default_factor: float | None = Field(default=None, ge=1.0, le=8.0)

    @model_validator(mode="after")
    def _spandrel_needs_source(self) -> Self:
        if self.kind == "spandrel" and self.source is None:
            raise ValueError("an upscaler of kind 'spandrel' needs a source (the model file)")
        return self


class OutputConfig(_Section):
    """How result images are encoded."""

    #: Used when the request has no ``output`` tag.
    default_format: Literal["png", "jpeg", "webp"] = "png"
    #: Write prompt, seed, model... into the image file (PNG text chunks / EXIF).
    embed_metadata: bool = False
    #: JPEG and WebP quality.
    quality: int = Field(default=90, ge=1, le=100)


class EngineConfig(BaseModel):
    """Everything the image engine needs to know. Build with ``from_mapping`` or
    ``load_engine_config``; a larger configuration may subclass it and add its own fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: dict[str, ModelConfig] = Field(min_length=1)
    loras: dict[str, LoraConfig] = Field(default_factory=dict)
    limits: EngineLimits = Field(default_factory=EngineLimits)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    upscaler: UpscalerConfig = Field(default_factory=UpscalerConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    #: ``cuda``, ``cuda:N``, ``mps`` or ``cpu``; None picks the best available.
    device: str | None = None
    #: None: float16 on a GPU, float32 on the CPU.
    dtype: DType | None = None

    @field_validator("models", "loras")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not is_valid_name(name):
                raise ValueError(f"name {name!r} is not a model or LoRA name: {NAME_RULE}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        if value is not None and not _DEVICE_RE.fullmatch(value):
            raise ValueError(f"device {value!r} is not one of cpu, mps, cuda, cuda:N")
        return value

    @model_validator(mode="after")
    def _one_default(self) -> Self:
        defaults = [name for name, model in self.models.items() if model.default]
        if len(defaults) > 1:
            raise ValueError(f"more than one default model: {', '.join(defaults)}")
        return self

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> Self:
        # A model's own defaults must be servable, or every request without them would fail.
        limits = self.limits
        for name, model in self.models.items():
            if model.steps is not None and model.steps > limits.max_steps:
                raise ValueError(
                    f"models.{name}.steps ({model.steps}) is above limits.max_steps "
                    f"({limits.max_steps})"
                )
            if (
                model.guidance_scale is not None
                and model.guidance_scale > limits.max_guidance_scale
            ):
                raise ValueError(
                    f"models.{name}.guidance_scale ({model.guidance_scale}) is above "
                    f"limits.max_guidance_scale ({limits.max_guidance_scale})"
                )
        for name, model in self.models.items():
            if (
                model.refine is not None
                and model.refine.upscaler == "learned"
                and self.upscaler.kind != "spandrel"
            ):
                raise ValueError(
                    f'models.{name}.refine.upscaler = "learned" needs an [upscaler] of kind '
                    '"spandrel" (the learned model to upscale with)'
                )
        for name, lora in self.loras.items():
            if abs(lora.weight) > limits.max_lora_weight:
                raise ValueError(
                    f"loras.{name}.weight ({lora.weight}) is beyond limits.max_lora_weight "
                    f"({limits.max_lora_weight})"
                )
        return self

    @property
    def default_model(self) -> str:
        """The model used when a request names none: the one marked default, else the first."""
        for name, model in self.models.items():
            if model.default:
                return name
        return next(iter(self.models))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: Path | str | None = None) -> Self:
        """Validate parsed configuration data (a TOML document as a dict).

        ``source`` is the file it came from: error messages name it, and sources written
        ``./x`` or ``../x`` are resolved against its folder (without it, against the working
        directory). Every source that ``is_local_path`` must then exist: a model folder or
        checkpoint file, a ``single_file_config`` folder, a LoRA file or folder, the
        upscaler's weights file. Hub ids are left for the loaders, with no lookup here.
        Raises ``ConfigError``.
        """
        where = str(source) if source is not None else "engine configuration"
        try:
            config = cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_describe(exc)}") from exc
        if source is not None:
            config = config._with_relative_sources(Path(source).resolve().parent)
        config._check_local_sources(where)
        return config

    def _check_local_sources(self, where: str) -> None:
        """Raise ``ConfigError`` naming the field and the path of a local source that is not
        there (or is a file where a folder is needed, or the other way round)."""
        wanted: list[tuple[str, str, str]] = []  # (field, path, "file" / "folder" / "either")
        for name, model in self.models.items():
            if is_local_path(model.source):
                wanted.append((f"models.{name}.source", model.source, _model_kind(model)))
            config_folder = model.single_file_config
            if config_folder is not None and is_local_path(config_folder):
                wanted.append((f"models.{name}.single_file_config", config_folder, "folder"))
            if model.gguf_file is not None and is_local_path(model.gguf_file):
                wanted.append((f"models.{name}.gguf_file", model.gguf_file, "file"))
        for name, lora in self.loras.items():
            if is_local_path(lora.source):
                wanted.append((f"loras.{name}.source", lora.source, "either"))
        if self.upscaler.kind == "spandrel" and self.upscaler.source is not None:
            # spandrel reads a file on this machine: any upscaler source is a path.
            wanted.append(("upscaler.source", self.upscaler.source, "file"))
        for field_name, value, kind in wanted:
            problem = _path_problem(Path(value).expanduser(), kind)
            if problem is not None:
                raise ConfigError(f"{where}: {field_name}: local path {value} {problem}")

    def _with_relative_sources(self, base: Path) -> Self:
        models = {
            name: model.model_copy(
                update={
                    "source": _resolve(model.source, base),
                    "single_file_config": (
                        _resolve(model.single_file_config, base)
                        if model.single_file_config is not None
                        else None
                    ),
                    "gguf_file": (
                        _resolve(model.gguf_file, base) if model.gguf_file is not None else None
                    ),
                }
            )
            for name, model in self.models.items()
        }
        loras = {
            name: lora.model_copy(update={"source": _resolve(lora.source, base)})
            for name, lora in self.loras.items()
        }
        upscaler = self.upscaler
        if upscaler.source is not None:
            upscaler = upscaler.model_copy(update={"source": _resolve(upscaler.source, base)})
        return self.model_copy(update={"models": models, "loras": loras, "upscaler": upscaler})


def _model_kind(model: ModelConfig) -> str:
    return "file" if model.single_file else "folder"


def _path_problem(path: Path, kind: str) -> str | None:
    """Why ``path`` cannot serve as a ``kind`` ("file", "folder", "either"); None if it can."""
    if not path.exists():
        return "does not exist"
    if kind == "file" and not path.is_file():
        return "is not a file"
    if kind == "folder" and not path.is_dir():
        return "is not a folder"
    return None


def _resolve(value: str, base: Path) -> str:
    """``./x`` and ``../x`` are relative to the config file; ``~`` is the home folder."""
    if value.startswith(("./", "../", ".\\", "..\\")):
        return str((base / value).resolve())
    if value.startswith("~"):
        return str(Path(value).expanduser())
    return value


def _describe(exc: ValidationError) -> str:
    """One line per problem: ``models.sdxl.family: Input should be 'sd15' or 'sdxl'``."""
    problems = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] == "value_error":
            message = str(error.get("ctx", {}).get("error", message))
        elif error["type"] == "too_short" and location == "models":
            message = "at least one model must be configured"
        problems.append(f"{location}: {message}")
    return "; ".join(problems)


def read_config_file(path: Path | str) -> dict[str, Any]:
    """The TOML document in ``path``, not yet validated. Raises ``ConfigError`` naming the
    file when it cannot be read or is not TOML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def load_engine_config(path: Path | str) -> EngineConfig:
    """Read and validate an engine TOML file. Raises ``ConfigError`` naming file and field."""
    return EngineConfig.from_mapping(read_config_file(path), source=path)
