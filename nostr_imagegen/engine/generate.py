"""Turning a validated ``ImageJob`` into images.

    engine = Engine(load_engine_config("engine.toml"))
    plan = engine.plan(job)                     # JobRejected now, before any heavy work
    result = engine.generate(job, progress=lambda step, total: ..., cancel=threading.Event())
    result.images[0].save("out.png"); result.seed  # the seed used (drawn when absent)

What a job may ask for and what it gets:

- ``model``/``lora``: names from the operator's configuration (``Registry``).
- ``ratio``/``size``/``upscale``: ``job_dimensions`` for the model's family; the image is
  generated at ``plan.dimensions.width x height``, upscaled (Lanczos or the configured
  learned upscaler), then resized to exactly ``output_width x output_height``.
- ``steps``/``guidance_scale``/``strength``: the job's, else the model's defaults, else 30,
  7.5 and 0.75; a value beyond ``limits`` is rejected, never clamped.
- ``seed``: the job's, else one drawn with ``secrets``; a ``torch.Generator`` on the device
  seeded with it makes the job reproducible on the same machine.
- an input image (``init_image``): img2img over the same weights (``from_pipe``), the image
  resized to the generation size.
- ``sampler``: ``["param", "sampler", NAME]`` from the model's offered samplers
  (``engine.samplers``), swapped in for the job and the model's own scheduler put back.
- ``num_images``: 1 up to the model's ``max_images``, in one pipeline call, image ``k`` drawn
  with seed ``seed + k`` (``engine.batch``).
- ``upscale`` and a ``size`` beyond the native budget on a model with ``[models.X.refine]``:
  generated at the native budget, enlarged and redrawn by img2img (``engine.refine``).
- ``output``: the type its images are encoded as (``encode.output_type``); one the encoder
  cannot write is rejected by ``plan``, before anything is loaded or generated.

Batches (``engine.batch``): ``generate_batch`` runs text-to-image jobs whose plans share a
``batch_key`` in one pipeline call (up to the model's ``max_batch``), each with its own
prompt, seeds, progress and cancel flag; a cancelled job gets ``JobCancelled`` while the
others finish. ``loaded_models()`` and ``loads`` tell a scheduler which models are warm.

    outcomes = engine.generate_batch([BatchRequest(job_a), BatchRequest(job_b, cancel=flag)])

One pipeline call runs at a time per engine (a lock): diffusers pipelines and schedulers are
not re-entrant, so a solo job and a batch never enter the pipeline together. Nothing
survives a call: LoRA adapters are enabled for it and disabled afterwards whatever happens,
the generators are the jobs' own, and a failed call (out of memory, a pipeline error) raises
``EngineError`` (a batch: each job's outcome) and leaves the engine usable. ``cancel`` is
checked between denoising steps (``JobCancelled``).
"""

from __future__ import annotations

import inspect
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from PIL import Image, ImageOps

from nostr_imagegen.engine import batch, refine
from nostr_imagegen.engine.batch import BatchRequest
from nostr_imagegen.engine.device import generator_device, select_device, select_dtype
from nostr_imagegen.engine.families import family_spec
from nostr_imagegen.engine.memory import check_memory_options
from nostr_imagegen.engine.pipelines import LoadedModel, PipelineCache, PipelineLoader
from nostr_imagegen.engine.planner import (
    DEFAULT_GUIDANCE_SCALE,
    DEFAULT_STEPS,
    DEFAULT_STRENGTH,
    EngineOffer,
    GenerationPlan,
    OfferedLora,
    OfferedModel,
    Planner,
    format_number,
)
from nostr_imagegen.engine.refine import RefinePlan
from nostr_imagegen.engine.registry import Registry
from nostr_imagegen.engine.samplers import (
    check_sampler_packages,
    sampler_applied,
)
from nostr_imagegen.engine.steps import Interrupted, Progress, StepWatch
from nostr_imagegen.engine.upscale import LanczosUpscaler, SpandrelUpscaler, Upscaler, upscale_image
from nostr_imagegen.engine_config import EngineConfig
from nostr_imagegen.errors import EngineError, JobRejected, NostrImagegenError
from nostr_imagegen.imagejob.model import ImageJob

__all__ = [
    "DEFAULT_GUIDANCE_SCALE",
    "DEFAULT_STEPS",
    "DEFAULT_STRENGTH",
    "Engine",
    "EngineOffer",
    "GenerationPlan",
    "GenerationResult",
    "OfferedLora",
    "OfferedModel",
]

logger = logging.getLogger(__name__)

#: Seeds drawn for jobs that give none: 32 bits, like most front ends, so they can be retyped.
_SEED_BITS: Final = 32


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """The images of one job and exactly how they were made."""

    #: Final images, upscaled and resized to ``output_width x output_height``.
    images: tuple[Image.Image, ...]
    seed: int
    model: str
    loras: tuple[tuple[str, float], ...]
    #: Size the pipeline generated at.
    width: int
    height: int
    #: Size delivered (after upscaling).
    output_width: int
    output_height: int
    steps: int
    guidance_scale: float
    strength: float | None
    prompt: str
    negative_prompt: str | None
    #: Seconds from the start of the job (model loading included) to the final images.
    elapsed: float
    #: The seed of each image (``seed`` is the first); empty means ``(seed,)``.
    seeds: tuple[int, ...] = ()
    #: The sampler the job ran with; None: the model's own scheduler.
    sampler: str | None = None

    def metadata(self) -> dict[str, str]:
        """How the image was made, as text (for PNG text chunks / EXIF; no paths in it)."""
        data = {
            "prompt": self.prompt,
            "seed": str(self.seed),
            "model": self.model,
            "steps": str(self.steps),
            "guidance_scale": format_number(self.guidance_scale),
            "size": f"{self.width}x{self.height}",
        }
        if self.negative_prompt:
            data["negative_prompt"] = self.negative_prompt
        if self.sampler is not None:
            data["sampler"] = self.sampler
        if len(self.seeds) > 1:
            data["seeds"] = ", ".join(str(seed) for seed in self.seeds)
        if self.loras:
            data["loras"] = ", ".join(f"{n}:{format_number(w)}" for n, w in self.loras)
        if self.strength is not None:
            data["strength"] = format_number(self.strength)
        if (self.output_width, self.output_height) != (self.width, self.height):
            data["output_size"] = f"{self.output_width}x{self.output_height}"
        return data


@dataclass(frozen=True, slots=True)
class _Member:
    """One job of a pipeline call: the job, its plan, its seeds, its progress and cancel."""

    job: ImageJob
    plan: GenerationPlan
    seeds: tuple[int, ...]
    progress: Progress | None
    cancel: threading.Event | None

    @classmethod
    def of(
        cls,
        job: ImageJob,
        plan: GenerationPlan,
        progress: Progress | None,
        cancel: threading.Event | None,
    ) -> _Member:
        seed = job.seed if job.seed is not None else secrets.randbits(_SEED_BITS)
        return cls(job, plan, batch.image_seeds(seed, plan.num_images), progress, cancel)

    def result(self, images: tuple[Image.Image, ...], elapsed: float) -> GenerationResult:
        plan = self.plan
        logger.info(
            "job %s: %s %dx%d, %d steps, seed %d, %.2fs",
            self.job.id[:12],
            plan.model,
            plan.dimensions.width,
            plan.dimensions.height,
            plan.steps,
            self.seeds[0],
            elapsed,
        )
        return GenerationResult(
            images=images,
            seed=self.seeds[0],
            model=plan.model,
            loras=plan.loras,
            width=plan.dimensions.width,
            height=plan.dimensions.height,
            output_width=plan.dimensions.output_width,
            output_height=plan.dimensions.output_height,
            steps=plan.steps,
            guidance_scale=plan.guidance_scale,
            strength=plan.strength,
            prompt=self.job.prompt,
            negative_prompt=plan.negative_prompt,
            elapsed=elapsed,
            seeds=self.seeds,
            sampler=plan.sampler,
        )


class Engine:
    """Generates images for jobs with the models of an ``EngineConfig``.

    ``device``/``dtype`` override the configuration (``"cuda"``, ``"float16"``...); by
    default the best device and its usual precision are used. ``loader`` replaces the
    diffusers loading function and ``upscaler`` the configured upscaler (both for embedding
    and tests).
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        loader: PipelineLoader | None = None,
        upscaler: Upscaler | None = None,
    ) -> None:
        self._planner = Planner(config)
        self._config = config
        self._device = select_device(device if device is not None else config.device)
        self._dtype = select_dtype(self._device, dtype if dtype is not None else config.dtype)
        check_memory_options(config, self._device)
        check_sampler_packages(config)
        self._cache = PipelineCache(config, self._device, self._dtype, loader=loader)
        self._upscaler = upscaler
        self._lock = threading.Lock()
        self._upscaler_lock = threading.Lock()
        logger.info("engine on %s (%s)", self._device, str(self._dtype).removeprefix("torch."))

    @property
    def config(self) -> EngineConfig:
        return self._config

    @property
    def device(self) -> str:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def cache(self) -> PipelineCache:
        return self._cache

    @property
    def registry(self) -> Registry:
        return self._planner.registry

    def offered(self) -> EngineOffer:
        """The models, LoRAs, ratios and limits this engine serves."""
        return self._planner.offered()

    def plan(self, job: ImageJob, *, img2img: bool | None = None) -> GenerationPlan:
        """Check ``job`` and decide how it runs (``Planner.plan``); raises ``JobRejected``.
        Cheap: nothing is loaded."""
        return self._planner.plan(job, img2img=img2img)

    def warm(self, model_name: str | None = None) -> None:
        """Load a model (the default one when None) and the upscaler now, not on first job."""
        name, _ = self.registry.resolve_model(model_name)
        self._cache.get(name)
        self._get_upscaler()

    def close(self) -> None:
        """Unload every model. The engine loads them again if used afterwards."""
        with self._lock:
            self._cache.clear()

    def loaded_models(self) -> frozenset[str]:
        """The models loaded now: jobs for them start without a load."""
        return frozenset(self._cache.loaded())

    @property
    def loads(self) -> int:
        """How many times a model was loaded since the engine started (cache hits are not
        loads; a model evicted and needed again is loaded again)."""
        return self._cache.loads

    def max_batch(self, model: str) -> int:
        """Most jobs of ``model`` one ``generate_batch`` call takes (``[models.X] max_batch``)."""
        return self._planner.max_batch(model)

    def generate(
        self,
        job: ImageJob,
        *,
        init_image: Image.Image | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Run ``job``; see the module docstring. Raises ``JobRejected`` (the job asks for
        something not served), ``JobCancelled`` (``cancel`` was set), ``EngineError``."""
        if job.image_url is not None and init_image is None:
            raise EngineError("the job asks to alter an image: fetch it and pass it as init_image")
        plan = self.plan(job, img2img=init_image is not None)
        member = _Member.of(job, plan, progress, cancel)
        with self._lock:
            (outcome,) = self._run([member], init_image)
        if isinstance(outcome, NostrImagegenError):
            raise outcome
        return outcome

    def generate_batch(
        self, requests: Sequence[BatchRequest]
    ) -> list[GenerationResult | NostrImagegenError]:
        """Run text-to-image jobs that share a batch key in one pipeline call; see the
        module docstring. Returns each request's outcome, in order: its result, or the
        error that ended it (``JobRejected`` from planning it, ``JobCancelled``, an
        ``EngineError`` of the whole call). Never raises those.

        Raises ``ValueError`` for a batch that cannot be one (a programmer's error): no
        request, a job with an input image or a refine pass (no batch key), plans with
        different keys, or more jobs than the model's ``max_batch``.
        """
        if not requests:
            raise ValueError("generate_batch needs at least one request")
        planned: list[_Member | JobRejected] = []
        for request in requests:
            if request.job.image_url is not None:
                raise ValueError(f"job {request.job.id[:12]} alters an image: it runs alone")
            try:
                plan = self.plan(request.job, img2img=False)
            except JobRejected as rejected:
                planned.append(rejected)
                continue
            planned.append(_Member.of(request.job, plan, request.progress, request.cancel))
        members = [member for member in planned if isinstance(member, _Member)]
        ran: list[GenerationResult | NostrImagegenError] = []
        if members:
            self._check_batch(members)
            try:
                with self._lock:
                    ran = self._run(members, None)
            except NostrImagegenError as failed:  # the whole call failed: every job's outcome
                ran = [failed] * len(members)
        outcomes = iter(ran)
        return [next(outcomes) if isinstance(item, _Member) else item for item in planned]

    # ----- internals -------------------------------------------------------------------

    def _check_batch(self, members: Sequence[_Member]) -> None:
        key = members[0].plan.batch_key
        for member in members:
            if member.plan.batch_key is None:
                raise ValueError(
                    f"job {member.job.id[:12]} runs alone (img2img or a refine pass): no batch"
                )
            if member.plan.batch_key != key:
                raise ValueError(
                    f"job {member.job.id[:12]} cannot share a call with job "
                    f"{members[0].job.id[:12]}: their plans differ ({member.plan.batch_key} "
                    f"vs {key})"
                )
        model = members[0].plan.model
        if len(members) > self.max_batch(model):
            raise ValueError(
                f"{len(members)} jobs in one call, above max_batch={self.max_batch(model)} "
                f"of model {model!r}"
            )

    def _run(
        self, members: Sequence[_Member], init_image: Image.Image | None
    ) -> list[GenerationResult | NostrImagegenError]:
        """One pipeline call for ``members`` (one job, or a batch sharing a key; their plan
        is the first's but for prompts, seeds and output sizes). An error of the whole call is
        raised; a job stopped on its own (cancelled) gets its error as its outcome."""
        started = time.monotonic()
        plan = members[0].plan
        refine_steps = (
            int(plan.refine.steps * plan.refine.strength) if plan.refine is not None else 0
        )
        watch = StepWatch(
            [(member.progress, member.cancel) for member in members],
            steps=plan.steps,
            refine_steps=refine_steps,
        )
        if watch.all_stopped():
            return list(watch.outcomes())
        entry = self._cache.get(plan.model)
        lora_names = [name for name, _ in plan.loras]
        if lora_names:
            self._cache.ensure_loras(entry, lora_names)
        if watch.all_stopped():
            return list(watch.outcomes())
        pipeline = entry.img2img() if init_image is not None else entry.text2img
        if pipeline is None:
            raise EngineError(f"model {plan.model!r} was unloaded during the job")
        if plan.refine is not None:
            refine.check_refinable(entry.text2img, plan.model, _refine_tag(members[0].job))
        kwargs = self._call_arguments(members, pipeline, init_image, watch)
        expected = plan.num_images * len(members)
        try:
            images = self._call(
                entry, plan, lambda: self._generate(entry, pipeline, plan, kwargs, expected)
            )
        except Interrupted:
            return list(watch.outcomes())
        outcomes: list[GenerationResult | NostrImagegenError] = []
        for index, member in enumerate(members):
            stopped = watch.stopped[index]
            if stopped is not None:
                outcomes.append(stopped)
                continue
            own = images[index * plan.num_images : (index + 1) * plan.num_images]
            finished = tuple(self._finish(image, member.plan) for image in own)
            outcomes.append(member.result(finished, time.monotonic() - started))
        return outcomes

    def _call_arguments(
        self,
        members: Sequence[_Member],
        pipeline: Any,
        init_image: Image.Image | None,
        watch: StepWatch,
    ) -> dict[str, Any]:
        plan = members[0].plan
        accepted = inspect.signature(pipeline.__call__).parameters
        # One generator per image, job by job: the order diffusers lays out the images in.
        seeds = [seed for member in members for seed in member.seeds]
        generator = batch.generators(generator_device(self._device), seeds)
        prompts = [member.job.prompt for member in members]
        spec = family_spec(plan.family)
        kwargs: dict[str, Any] = {
            # A lone job's prompt stays a string: the refine pass repeats it per image.
            "prompt": prompts[0] if len(members) == 1 else prompts,
            "num_inference_steps": plan.steps,
            spec.guidance_argument: plan.guidance_scale,
            "generator": generator,
            "num_images_per_prompt": plan.num_images,
            "output_type": "pil",
            "callback_on_step_end": watch.on_step_end,
            # Sizes are decided once, by job_dimensions; Sana would re-bin them.
            "use_resolution_binning": False,
        }
        if plan.negative_prompt is not None:  # the batch key: all jobs have one, or none
            negatives = [member.plan.negative_prompt for member in members]
            kwargs["negative_prompt"] = negatives[0] if len(members) == 1 else negatives
        elif spec.guidance_argument == "true_cfg_scale":
            # Qwen-Image guides only against a negative prompt; without one the scale does
            # nothing, and passing it makes the pipeline log a warning for every job.
            del kwargs["true_cfg_scale"]
        if plan.true_cfg_scale is not None:
            kwargs["true_cfg_scale"] = plan.true_cfg_scale
        size = (plan.dimensions.width, plan.dimensions.height)
        if init_image is not None:
            kwargs["image"] = _prepare_init_image(init_image, size)
            kwargs["strength"] = plan.strength
        kwargs["width"], kwargs["height"] = size
        return _accepted_only(kwargs, accepted, plan, pipeline)

    def _generate(
        self,
        entry: LoadedModel,
        pipeline: Any,
        plan: GenerationPlan,
        kwargs: dict[str, Any],
        expected: int,
    ) -> list[Image.Image]:
        """The pipeline call (``expected`` images), then the refine pass of a job that has one."""
        images = self._pipeline_call(pipeline, plan, kwargs, expected)
        if plan.refine is None:
            return images
        dimensions = plan.dimensions
        return refine.refine_images(
            images,
            img2img=entry.img2img(),
            plan=plan.refine,
            upscaler=self._refine_upscaler(plan.refine),
            output_size=(dimensions.output_width, dimensions.output_height),
            multiple=plan.family.multiple,
            call_arguments=kwargs,
            run=lambda img2img, refine_kwargs: self._pipeline_call(
                img2img, plan, refine_kwargs, expected
            ),
        )

    @staticmethod
    def _pipeline_call(
        pipeline: Any, plan: GenerationPlan, kwargs: dict[str, Any], expected: int
    ) -> list[Image.Image]:
        with sampler_applied(
            pipeline, plan.sampler, model=plan.model, generator=kwargs.get("generator")
        ):
            output = pipeline(**kwargs)
        images = list(output.images)
        if not images or not all(isinstance(image, Image.Image) for image in images):
            raise EngineError("the pipeline returned no image")
        if len(images) != expected:
            raise EngineError(f"the pipeline returned {len(images)} images, not {expected}")
        return images

    def _refine_upscaler(self, plan: RefinePlan) -> Upscaler:
        return self._get_upscaler() if plan.upscaler == "learned" else LanczosUpscaler()

    def _call(
        self, entry: LoadedModel, plan: GenerationPlan, generate: Callable[[], list[Image.Image]]
    ) -> list[Image.Image]:
        try:
            try:
                if plan.loras:
                    # Inside the try: a switch that fails half-way is reset too.
                    entry.activate_loras(plan.loras)
                images = generate()
            finally:
                if plan.loras:
                    self._reset_loras(entry)
        except Interrupted:
            raise  # every job of the call was stopped: _run gives each its own outcome
        except torch.OutOfMemoryError as exc:
            self._after_out_of_memory()
            raise EngineError(
                f"out of memory generating {plan.dimensions.width}x{plan.dimensions.height} "
                f"with {plan.model!r}"
            ) from exc
        except NostrImagegenError:
            raise
        except Exception as exc:
            logger.exception("pipeline %r failed", plan.model)
            raise EngineError(f"image generation failed ({type(exc).__name__}: {exc})") from exc
        return images

    def _reset_loras(self, entry: LoadedModel) -> None:
        """Back to the base model; if that fails the pipeline is dropped, never reused."""
        try:
            entry.activate_loras(())
        except Exception:
            logger.exception("disabling LoRAs on %r failed; unloading it", entry.name)
            self._cache.evict(entry.name)

    def _after_out_of_memory(self) -> None:
        import gc

        gc.collect()
        if self._device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _finish(self, image: Image.Image, plan: GenerationPlan) -> Image.Image:
        dimensions = plan.dimensions
        target = (dimensions.output_width, dimensions.output_height)
        limits = self._config.limits
        if dimensions.upscale > 1.0 and plan.refine is None:  # a refine pass enlarged it
            image = upscale_image(
                image,
                dimensions.upscale,
                self._get_upscaler(),
                max_factor=limits.max_upscale,
                max_pixels=limits.max_output_side**2,
            )
        if image.size != target:
            image = image.resize(target, Image.Resampling.LANCZOS)
        return image

    def _get_upscaler(self) -> Upscaler:
        with self._upscaler_lock:
            if self._upscaler is None:
                settings = self._config.upscaler
                if settings.kind == "spandrel" and settings.source is not None:
                    self._upscaler = SpandrelUpscaler(
                        Path(settings.source), device=self._device, tile_size=settings.tile_size
                    )
                else:
                    self._upscaler = LanczosUpscaler()
            return self._upscaler


def _refine_tag(job: ImageJob) -> tuple[str, ...]:
    """The param that made a job need a refine pass: its upscale, else its size."""
    if job.upscale is not None:
        return ("param", "upscale", format_number(job.upscale))
    if job.size is not None:
        return ("param", "size", f"{job.size[0]}x{job.size[1]}")
    return ("param", "upscale")  # the operator's default_factor


def _accepted_only(
    kwargs: dict[str, Any], accepted: Mapping[str, Any], plan: GenerationPlan, pipeline: Any
) -> dict[str, Any]:
    """``kwargs`` without what ``pipeline.__call__`` does not take. A negative prompt the
    plan kept must be taken: the plan promised it (a pipeline of another class than its
    family's could lack it), so the job fails rather than silently losing it."""
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return kwargs  # a wrapper that takes anything passes it on
    if plan.negative_prompt is not None and "negative_prompt" not in accepted:
        raise JobRejected(
            f"model {plan.model} ({type(pipeline).__name__}) does not take a negative prompt",
            tag=("param", "negative_prompt", plan.negative_prompt[:64]),
        )
    return {key: value for key, value in kwargs.items() if key in accepted}


def _prepare_init_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """An RGB copy at the generation size, upright per its EXIF orientation."""
    upright = ImageOps.exif_transpose(image)
    if upright is None:  # only with in_place=True; keeps the type checker honest
        upright = image
    rgb = upright.convert("RGB")
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    return rgb
