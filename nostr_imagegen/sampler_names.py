"""The sampler vocabulary a request may name: A1111 / ComfyUI names and the diffusers
scheduler each one means.

    ["param", "sampler", "dpmpp_2m_karras"]

    [models.sd15]                       # the operator limits the set per model
    samplers = ["euler_a", "dpmpp_2m_karras", "ddim"]
    default_sampler = "dpmpp_2m_karras" # used when a request names none

A name means a diffusers scheduler class and the config keys that make it that sampler
(``use_karras_sigmas``, ``algorithm_type``...); the rest of the model's scheduler config
(betas, timestep spacing, prediction type, flow shift) is kept, as
``Class.from_config(pipeline.scheduler.config, **keys)`` keeps it. Two tables: one for the
denoisers trained with a noise schedule (the UNet families: SD 1.5, SD 2, SDXL) and one for
the flow-matching denoisers (SD 3, FLUX and the newer transformer families), whose pipelines
hand the scheduler sigmas and a shift, so only the schedulers that take those are offered for
them. Which table applies is read from the model's own scheduler once it is loaded
(``engine.samplers.is_flow_matching``).

Pure data (no torch): the engine configuration validates names against it without loading
diffusers.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "FLOW_SAMPLERS",
    "NOISE_SAMPLERS",
    "SAMPLER_NAMES",
    "SamplerSpec",
    "missing_packages",
]


@dataclass(frozen=True, slots=True)
class SamplerSpec:
    """A diffusers scheduler class and the config keys that make it one sampler."""

    scheduler: str
    #: Keys set on top of the model's scheduler config. Only keys the class takes are passed.
    config: Mapping[str, Any] = field(default_factory=dict)
    #: Packages the scheduler needs beyond torch and diffusers (not offered without them).
    requires: tuple[str, ...] = ()


def _spec(scheduler: str, **config: Any) -> SamplerSpec:
    return SamplerSpec(scheduler, MappingProxyType(config))


def _needing(package: str, spec: SamplerSpec) -> SamplerSpec:
    return SamplerSpec(spec.scheduler, spec.config, (*spec.requires, package))


#: Sigma schedules a previous sampler may have left in the config; each sampler says which
#: one it uses, so switching from ``*_karras`` back to a plain sampler really is plain.
_PLAIN = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}
_KARRAS = {**_PLAIN, "use_karras_sigmas": True}

#: For the UNet families (epsilon or v-prediction over a noise schedule). The mapping is the
#: one diffusers documents for A1111 / k-diffusion names.
NOISE_SAMPLERS: Final[Mapping[str, SamplerSpec]] = MappingProxyType(
    {
        "euler": _spec("EulerDiscreteScheduler", **_PLAIN),
        "euler_a": _spec("EulerAncestralDiscreteScheduler"),
        "heun": _spec("HeunDiscreteScheduler", **_PLAIN),
        "lms": _needing("scipy", _spec("LMSDiscreteScheduler", **_PLAIN)),
        "lms_karras": _needing("scipy", _spec("LMSDiscreteScheduler", **_KARRAS)),
        "dpm2": _spec("KDPM2DiscreteScheduler", **_PLAIN),
        "dpm2_a": _spec("KDPM2AncestralDiscreteScheduler", **_PLAIN),
        "dpmpp_2m": _spec("DPMSolverMultistepScheduler", algorithm_type="dpmsolver++", **_PLAIN),
        "dpmpp_2m_karras": _spec(
            "DPMSolverMultistepScheduler", algorithm_type="dpmsolver++", **_KARRAS
        ),
        "dpmpp_2m_sde": _spec(
            "DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver++", **_PLAIN
        ),
        "dpmpp_2m_sde_karras": _spec(
            "DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver++", **_KARRAS
        ),
        "dpmpp_sde": _spec("DPMSolverSinglestepScheduler", **_PLAIN),
        "dpmpp_sde_karras": _spec("DPMSolverSinglestepScheduler", **_KARRAS),
        "ddim": _spec("DDIMScheduler"),
        "ddpm": _spec("DDPMScheduler"),
        "plms": _spec("PNDMScheduler"),
        "deis": _spec("DEISMultistepScheduler", **_PLAIN),
        "unipc": _spec("UniPCMultistepScheduler", **_PLAIN),
        "lcm": _spec("LCMScheduler"),
        "tcd": _spec("TCDScheduler"),
    }
)

#: For the flow-matching families. FLUX-style pipelines call ``set_timesteps(sigmas=...,
#: mu=...)``, so only schedulers taking both are here (Heun and DPM++ do not, in diffusers).
FLOW_SAMPLERS: Final[Mapping[str, SamplerSpec]] = MappingProxyType(
    {
        "euler": _spec("FlowMatchEulerDiscreteScheduler", stochastic_sampling=False, **_PLAIN),
        "euler_a": _spec("FlowMatchEulerDiscreteScheduler", stochastic_sampling=True, **_PLAIN),
        "euler_karras": _spec(
            "FlowMatchEulerDiscreteScheduler", stochastic_sampling=False, **_KARRAS
        ),
        "lcm": _spec("FlowMatchLCMScheduler", **_PLAIN),
        "unipc": _spec(
            "UniPCMultistepScheduler",
            use_flow_sigmas=True,
            prediction_type="flow_prediction",
            **_PLAIN,
        ),
    }
)

#: Every name a request may give, in the order they are listed to customers.
SAMPLER_NAMES: Final[tuple[str, ...]] = tuple(dict.fromkeys([*NOISE_SAMPLERS, *FLOW_SAMPLERS]))


def missing_packages(name: str) -> tuple[str, ...]:
    """The packages sampler ``name`` needs that are not installed here (``lms`` needs scipy)."""
    needed = {
        package
        for table in (NOISE_SAMPLERS, FLOW_SAMPLERS)
        if name in table
        for package in table[name].requires
    }
    return tuple(sorted(p for p in needed if importlib.util.find_spec(p) is None))
