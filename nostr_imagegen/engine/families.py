"""The model families the engine serves: the one table that knows what each can do.

Every other module asks this table (``family_spec``) instead of testing for a family::

    family      text-to-image / img2img pipelines                 negative prompt   LoRA
    sd15        StableDiffusionPipeline / ...Img2ImgPipeline         guidance > 1      yes
    sd2         StableDiffusionPipeline / ...Img2ImgPipeline         guidance > 1      yes
    sdxl        StableDiffusionXLPipeline / ...Img2ImgPipeline       guidance > 1      yes
    sd3         StableDiffusion3Pipeline / ...Img2ImgPipeline        guidance > 1      yes
    flux        FluxPipeline / FluxImg2ImgPipeline                   true_cfg_scale>1  yes
    flux2       Flux2KleinPipeline / none                            none              yes
    qwenimage   QwenImagePipeline / QwenImageImg2ImgPipeline         guidance > 1 (*)  yes
    zimage      ZImagePipeline / ZImageImg2ImgPipeline               guidance > 0      yes
    sana        SanaPipeline / none                                  guidance > 1      yes
    chroma      ChromaPipeline / ChromaImg2ImgPipeline               guidance > 1      yes

(*) Qwen-Image's classifier-free guidance is its ``true_cfg_scale``; its ``guidance_scale``
only feeds guidance-distilled transformers. A job's ``guidance_scale`` is therefore passed to
Qwen-Image as ``true_cfg_scale`` (``FamilySpec.guidance_argument``), so "guidance" means the
same thing to a customer on every family.

FLUX.1 is distilled: its ``guidance_scale`` is an embedded hint, not classifier-free
guidance, and a negative prompt only acts through a second pass with ``true_cfg_scale > 1``
(twice the compute). The operator opts in per model (``true_cfg_scale = 4.0`` in its
config); without it ``Engine.plan`` refuses a negative prompt instead of dropping it.

Sizes (native side, the multiple every side keeps) live in the pure core
(``imagejob.dimensions.ModelFamily``: the service sizes jobs without torch); this table reads
them from there. Which arguments a pipeline takes is read from the real class
(``call_parameters``: ``inspect.signature`` of its ``__call__``), so nothing it does not take
is ever passed. The scheduler, flow-matching flag and GPU dtype are the defaults a sampler
switch or a dtype choice starts from.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal

from nostr_imagegen.imagejob.dimensions import ModelFamily

__all__ = [
    "FAMILIES",
    "FamilySpec",
    "NegativePrompt",
    "call_parameters",
    "family_spec",
    "pipeline_class",
]


class NegativePrompt(StrEnum):
    """How a family's pipeline applies a negative prompt."""

    #: Classifier-free guidance: applied when the guidance is above ``FamilySpec.cfg_above``.
    GUIDANCE = "guidance"
    #: A second "true CFG" pass, only when the model's ``true_cfg_scale`` is above 1 (FLUX.1).
    TRUE_CFG = "true_cfg"
    #: Not at all: the pipeline takes no negative prompt (FLUX.2 klein).
    NONE = "none"


@dataclass(frozen=True, slots=True)
class FamilySpec:
    """What one model family is and can do (see the module docstring's table)."""

    family: ModelFamily
    #: What people call it ("FLUX.1", "Qwen-Image"), for messages and docs.
    title: str
    #: diffusers text-to-image pipeline class name; also the ``from_single_file`` class.
    text2img: str
    #: diffusers image-to-image class (derived with ``from_pipe``), None when there is none.
    img2img: str | None
    #: True when a single ``.safetensors`` checkpoint is offered as a model source. Only
    #: where a test loads one (``tests/engine/test_families.py``): diffusers' converters
    #: for SD3, FLUX.1 and Chroma hard-code the real widths (FLUX's ``inner_dim = 3072``), so
    #: no tiny checkpoint of theirs loads, and those families are offered as folders only.
    single_file: bool
    #: True when the pipeline has a LoRA loader (``load_lora_weights``).
    lora: bool
    steps: int
    guidance_scale: float
    negative_prompt: NegativePrompt
    #: For ``NegativePrompt.GUIDANCE``: the guidance must be above this for it to apply.
    cfg_above: float
    #: The ``__call__`` argument a job's ``guidance_scale`` is passed as.
    guidance_argument: Literal["guidance_scale", "true_cfg_scale"]
    #: diffusers scheduler class the family's checkpoints ship with.
    scheduler: str
    #: True for flow-matching families (their samplers are the flow-matching schedulers).
    flow_matching: bool
    #: The dtype the family is usually run in on a GPU.
    gpu_dtype: Literal["float16", "bfloat16"]
    #: For families whose checkpoints are shared as the denoiser alone (Z-Image, as ComfyUI
    #: ships it): its class, loaded ``from_single_file``; the other components come from the
    #: model's ``single_file_config`` folder. None: the file holds the whole pipeline.
    single_file_transformer: str | None = None

    @property
    def native_size(self) -> int:
        return self.family.native_size

    @property
    def multiple(self) -> int:
        return self.family.multiple

    @property
    def img2img_supported(self) -> bool:
        return self.img2img is not None


def _spec(family: ModelFamily, title: str, text2img: str, **fields: Any) -> FamilySpec:
    defaults: dict[str, Any] = {
        "img2img": None,
        "single_file": False,
        "lora": True,
        "negative_prompt": NegativePrompt.GUIDANCE,
        "cfg_above": 1.0,
        "guidance_argument": "guidance_scale",
        "scheduler": "FlowMatchEulerDiscreteScheduler",
        "flow_matching": True,
        "gpu_dtype": "bfloat16",
    }
    return FamilySpec(family=family, title=title, text2img=text2img, **{**defaults, **fields})


_UNET: Final[dict[str, Any]] = {"flow_matching": False, "gpu_dtype": "float16", "single_file": True}

#: The table, one entry per ``ModelFamily``.
FAMILIES: Final[Mapping[ModelFamily, FamilySpec]] = MappingProxyType(
    {
        ModelFamily.SD15: _spec(
            ModelFamily.SD15,
            "Stable Diffusion 1.5",
            "StableDiffusionPipeline",
            img2img="StableDiffusionImg2ImgPipeline",
            steps=30,
            guidance_scale=7.5,
            scheduler="PNDMScheduler",
            **_UNET,
        ),
        ModelFamily.SD2: _spec(
            ModelFamily.SD2,
            "Stable Diffusion 2",
            "StableDiffusionPipeline",
            img2img="StableDiffusionImg2ImgPipeline",
            steps=30,
            guidance_scale=7.5,
            scheduler="DDIMScheduler",
            **_UNET,
        ),
        ModelFamily.SDXL: _spec(
            ModelFamily.SDXL,
            "Stable Diffusion XL",
            "StableDiffusionXLPipeline",
            img2img="StableDiffusionXLImg2ImgPipeline",
            steps=30,
            guidance_scale=7.5,
            scheduler="EulerDiscreteScheduler",
            **_UNET,
        ),
        ModelFamily.SD3: _spec(
            ModelFamily.SD3,
            "Stable Diffusion 3",
            "StableDiffusion3Pipeline",
            img2img="StableDiffusion3Img2ImgPipeline",
            steps=28,
            guidance_scale=7.0,
        ),
        ModelFamily.FLUX: _spec(
            ModelFamily.FLUX,
            "FLUX.1",
            "FluxPipeline",
            img2img="FluxImg2ImgPipeline",
            steps=28,
            guidance_scale=3.5,
            negative_prompt=NegativePrompt.TRUE_CFG,
        ),
        ModelFamily.FLUX2: _spec(
            ModelFamily.FLUX2,
            "FLUX.2 klein",
            # Flux2KleinPipeline's image argument is a reference for editing, with no
            # strength: it is not img2img, so none is offered.
            "Flux2KleinPipeline",
            steps=4,
            guidance_scale=1.0,
            negative_prompt=NegativePrompt.NONE,
        ),
        ModelFamily.QWENIMAGE: _spec(
            ModelFamily.QWENIMAGE,
            "Qwen-Image",
            "QwenImagePipeline",
            img2img="QwenImageImg2ImgPipeline",
            steps=50,
            guidance_scale=4.0,
            guidance_argument="true_cfg_scale",
        ),
        ModelFamily.ZIMAGE: _spec(
            ModelFamily.ZIMAGE,
            "Z-Image",
            "ZImagePipeline",
            img2img="ZImageImg2ImgPipeline",
            single_file=True,
            # diffusers' Z-Image converter takes every key of the checkpoint as the
            # transformer's (a VAE in the same file is lost) and its text encoder is never
            # read from one: the file is the transformer, the rest the config folder.
            single_file_transformer="ZImageTransformer2DModel",
            steps=9,
            guidance_scale=0.0,
            # ZImagePipeline runs classifier-free guidance for any guidance above 0.
            cfg_above=0.0,
        ),
        ModelFamily.SANA: _spec(
            ModelFamily.SANA,
            "Sana",
            # SanaSprintImg2ImgPipeline needs a Sana Sprint transformer: no img2img here.
            "SanaPipeline",
            steps=20,
            guidance_scale=4.5,
            scheduler="DPMSolverMultistepScheduler",
        ),
        ModelFamily.CHROMA: _spec(
            ModelFamily.CHROMA,
            "Chroma",
            "ChromaPipeline",
            img2img="ChromaImg2ImgPipeline",
            steps=35,
            guidance_scale=5.0,
        ),
    }
)


def family_spec(family: ModelFamily) -> FamilySpec:
    """The table's entry for ``family``."""
    return FAMILIES[family]


def pipeline_class(name: str) -> Any:
    """The diffusers class called ``name`` (diffusers is imported on first use)."""
    diffusers: Any = importlib.import_module("diffusers")
    return getattr(diffusers, name)


@functools.cache
def call_parameters(class_name: str) -> frozenset[str]:
    """The keyword arguments the diffusers pipeline ``class_name`` takes when called."""
    signature = inspect.signature(pipeline_class(class_name).__call__)
    return frozenset(name for name in signature.parameters if name != "self")
