"""Samplers per job: choosing one for a request, and swapping the scheduler for one call.

    name = choose_sampler(job, "tiny", model_config)      # JobRejected for a name not offered
    with sampler_applied(pipeline, name, model="tiny", generator=generators):
        pipeline(..., generator=generators)              # runs with that scheduler
    # pipeline.scheduler is the model's own scheduler object again, whatever happened

The vocabulary and what each name means live in ``nostr_imagegen.sampler_names``. Which of
its two tables applies is read from the scheduler the model was loaded with
(``is_flow_matching``), so a family added later gets the right one without being listed
here. The scheduler for a job is built with ``Class.from_config(original.config, **keys)``:
a scheduler holds no weights: swapping one in and back costs about a millisecond, a
hundredth of a reload of the pipeline (``benchmarks/bench_samplers.py``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nostr_imagegen.engine_config import EngineConfig, ModelConfig
from nostr_imagegen.errors import ConfigError, JobRejected
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.sampler_names import (
    FLOW_SAMPLERS,
    NOISE_SAMPLERS,
    SAMPLER_NAMES,
    SamplerSpec,
    missing_packages,
)

__all__ = [
    "build_scheduler",
    "check_sampler_packages",
    "choose_sampler",
    "is_flow_matching",
    "offered_samplers",
    "sampler_applied",
    "sampler_spec",
]

#: The request param naming a sampler: ``["param", "sampler", NAME]``.
SAMPLER_PARAM = "sampler"


def offered_samplers(model: ModelConfig) -> tuple[str, ...]:
    """The sampler names a model's requests may give: its ``samplers`` list, else every
    one whose packages are installed here."""
    if model.samplers is not None:
        return model.samplers
    return tuple(name for name in SAMPLER_NAMES if not missing_packages(name))


def check_sampler_packages(config: EngineConfig) -> None:
    """Refuse, at start-up, a configured sampler whose package is missing (``lms`` without
    scipy): ``ConfigError`` naming the model, the sampler and the package."""
    for name, model in config.models.items():
        listed = [*(model.samplers or ()), model.default_sampler]
        for sampler in dict.fromkeys(s for s in listed if s is not None):
            missing = missing_packages(sampler)
            if missing:
                raise ConfigError(
                    f"models.{name}: sampler {sampler!r} needs the {', '.join(missing)} "
                    "package, which is not installed"
                )


def choose_sampler(job: ImageJob, model_name: str, model: ModelConfig) -> str | None:
    """The sampler a job runs with: the request's, else the model's ``default_sampler``,
    else None (the scheduler the model was loaded with).

    Raises ``JobRejected`` naming the offered samplers for a name outside the vocabulary or
    outside the model's ``samplers`` list, and for a param given twice or with two values.
    """
    values = job.extra_params.get(SAMPLER_PARAM)
    if values is None:
        return model.default_sampler
    offered = offered_samplers(model)
    if len(values) != 1:
        raise JobRejected(
            f"param 'sampler' takes one name, got {len(values)} values; offered for model "
            f"{model_name!r}: {', '.join(offered)}",
            tag=("param", SAMPLER_PARAM, *values[:4]),
        )
    name = values[0]
    if name not in offered:
        known = "is not offered" if name in SAMPLER_NAMES else "is not a sampler"
        raise JobRejected(
            f"sampler {name[:64]!r} {known} for model {model_name!r}; choose one of "
            f"{', '.join(offered)}",
            tag=("param", SAMPLER_PARAM, name[:64]),
        )
    return name


def is_flow_matching(scheduler: Any) -> bool:
    """True when ``scheduler`` (a model's own) steps a flow-matching denoiser: a
    ``FlowMatch*`` class, or a multistep solver configured for flow sigmas."""
    if type(scheduler).__name__.startswith("FlowMatch"):
        return True
    config = getattr(scheduler, "config", {})
    return bool(config.get("use_flow_sigmas")) or config.get("prediction_type") == (
        "flow_prediction"
    )


def sampler_spec(name: str, original: Any, *, model: str) -> SamplerSpec:
    """What ``name`` means for a model whose own scheduler is ``original``. Raises
    ``JobRejected`` listing the names that do apply when this kind of denoiser has no
    scheduler for it (``dpmpp_2m`` on a flow-matching model)."""
    table = FLOW_SAMPLERS if is_flow_matching(original) else NOISE_SAMPLERS
    spec = table.get(name)
    if spec is None:
        kind = "flow-matching" if table is FLOW_SAMPLERS else "noise-schedule"
        raise JobRejected(
            f"sampler {name!r} does not apply to model {model!r} (a {kind} model); "
            f"choose one of {', '.join(table)}",
            tag=("param", SAMPLER_PARAM, name),
        )
    return spec


def build_scheduler(name: str, original: Any, *, model: str) -> Any:
    """A new scheduler for sampler ``name``, from ``original``'s config (betas, spacing,
    prediction type and shift kept) with the sampler's own keys on top."""
    spec = sampler_spec(name, original, model=model)
    diffusers: Any = importlib.import_module("diffusers")
    scheduler_class = getattr(diffusers, spec.scheduler)
    accepted = inspect.signature(scheduler_class.__init__).parameters
    keys = {key: value for key, value in spec.config.items() if key in accepted}
    config = original.config
    # FlowMatch schedulers call their shift ``shift``; the multistep solvers ``flow_shift``.
    if "flow_shift" in accepted and "shift" in config and "flow_shift" not in config:
        keys.setdefault("flow_shift", config["shift"])
    return scheduler_class.from_config(config, **keys)


@contextmanager
def sampler_applied(
    pipeline: Any, name: str | None, *, model: str, generator: Any = None
) -> Iterator[None]:
    """Run the block with sampler ``name`` as ``pipeline``'s scheduler (None: leave it),
    and put the original scheduler object back afterwards, also when the block raises.

    ``generator`` (the job's, one per image) is bound to the scheduler's ``step``: the
    flow-matching pipelines (FLUX, SD3, Z-Image...) call ``step`` without one, so a
    stochastic sampler (``euler_a``) would draw its noise from torch's global generator and
    the same seed would give another image each time. The noise pipelines pass their own
    generator to ``step``, which overrides this binding, so nothing changes for them.
    """
    if name is None:
        yield
        return
    original = pipeline.scheduler
    replacement = build_scheduler(name, original, model=model)
    if generator is not None and "generator" in inspect.signature(replacement.step).parameters:
        replacement.step = functools.partial(replacement.step, generator=generator)
    pipeline.scheduler = replacement
    try:
        yield
    finally:
        pipeline.scheduler = original
