"""What a job may ask of a model's family: refusals a customer understands, or params the
operator chose to drop, decided before anything is loaded.

    decision = family_decision("flux-schnell", model, job, guidance_scale=3.5, img2img=False)
    decision.negative_prompt     # what the pipeline gets (None: none)
    decision.true_cfg_scale      # FLUX.1's second pass, when the operator turned it on
    decision.ignored             # params dropped because of ``ignore_unsupported``

Refused (``JobRejected`` carrying the param tag), unless the model's config lists the param
in ``ignore_unsupported``, in which case it is dropped and named in ``decision.ignored``:

- a negative prompt on a family without one (FLUX.2 klein), on FLUX.1 without the
  operator's ``true_cfg_scale``, or at a guidance that does not apply it (classifier-free
  guidance only acts above 1: above 0 for Z-Image);
- a ``guidance_scale`` on a pipeline that takes none.

Always refused: an input image for a family without an img2img pipeline (dropping the image
would deliver something else than what was asked).

``check_model_config`` is the start-up side: configuration keys a family cannot honour
(``true_cfg_scale`` off FLUX.1, a single-file source for a family that loads none) are
``ConfigError`` when the engine is built, not a failure at the first job.
"""

from __future__ import annotations

from dataclasses import dataclass

from nostr_imagegen.engine.families import NegativePrompt, call_parameters, family_spec
from nostr_imagegen.engine_config import SINGLE_FILE_SUFFIXES, ModelConfig
from nostr_imagegen.errors import ConfigError, JobRejected
from nostr_imagegen.imagejob.model import ImageJob

__all__ = ["FamilyDecision", "check_model_config", "family_decision", "model_params"]

#: Tag values quoted back in a refusal are cut to this many characters.
_QUOTE_CHARS = 64


@dataclass(frozen=True, slots=True)
class FamilyDecision:
    """The family-dependent part of a plan."""

    negative_prompt: str | None
    #: Passed as ``true_cfg_scale`` when the family applies negative prompts that way.
    true_cfg_scale: float | None
    #: Params of the job that were dropped because the model's config says to ignore them.
    ignored: tuple[str, ...]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def family_decision(
    name: str, model: ModelConfig, job: ImageJob, *, guidance_scale: float, img2img: bool
) -> FamilyDecision:
    """Refuse what ``model`` (offered as ``name``) cannot do for ``job``; see the module
    docstring. ``guidance_scale`` is the one the job will run at. Raises ``JobRejected``."""
    spec = family_spec(model.family)
    ignored: list[str] = []
    if img2img and spec.img2img is None:
        raise JobRejected(
            f"model {name} ({spec.title}) cannot alter an input image; "
            "send a prompt without an image, or ask for another model",
            tag=("param", "model", name),
        )
    if job.guidance_scale is not None:
        argument = spec.guidance_argument
        pipeline = spec.img2img if img2img and spec.img2img else spec.text2img
        if argument not in call_parameters(pipeline):
            if "guidance_scale" not in model.ignore_unsupported:
                raise JobRejected(
                    f"model {name} ({spec.title}) does not take a guidance_scale; "
                    "send the job without it",
                    tag=("param", "guidance_scale", _number(job.guidance_scale)),
                )
            ignored.append("guidance_scale")
    negative = job.negative_prompt or None
    true_cfg: float | None = None
    if negative is not None:
        problem = _negative_prompt_problem(
            spec.negative_prompt, model, guidance_scale, spec.cfg_above
        )
        if problem is None:
            if spec.negative_prompt is NegativePrompt.TRUE_CFG:
                true_cfg = model.true_cfg_scale
        elif "negative_prompt" in model.ignore_unsupported:
            ignored.append("negative_prompt")
            negative = None
        else:
            raise JobRejected(
                f"model {name} ({spec.title}) does not take a negative prompt{problem}",
                tag=("param", "negative_prompt", negative[:_QUOTE_CHARS]),
            )
    return FamilyDecision(negative_prompt=negative, true_cfg_scale=true_cfg, ignored=tuple(ignored))


def _negative_prompt_problem(
    mode: NegativePrompt, model: ModelConfig, guidance_scale: float, cfg_above: float
) -> str | None:
    """Why a negative prompt would not apply (the end of the refusal), None when it does."""
    if mode is NegativePrompt.NONE:
        return "; send the job without one"
    if mode is NegativePrompt.TRUE_CFG:
        if model.true_cfg_scale is None:
            return (
                "; this provider runs it without the second guidance pass that applies one "
                "(true_cfg_scale); send the job without it"
            )
        return None
    if guidance_scale <= cfg_above:
        return (
            f" at guidance_scale {_number(guidance_scale)}; it applies only with "
            f"guidance_scale above {_number(cfg_above)}: ask for a higher one or send no "
            "negative prompt"
        )
    return None


def model_params(model: ModelConfig, *, loras: bool) -> tuple[str, ...]:
    """The request params ``model`` takes, for the announcement: every one it can apply
    (``negative_prompt`` when its family can and the operator enabled what it needs,
    ``strength`` when it alters images, ``lora`` when ``loras`` are offered for it)."""
    spec = family_spec(model.family)
    params = ["model", "ratio", "size", "upscale", "seed", "steps"]
    if spec.guidance_argument in call_parameters(spec.text2img):
        params.append("guidance_scale")
    takes_negative = {
        NegativePrompt.GUIDANCE: True,
        NegativePrompt.TRUE_CFG: model.true_cfg_scale is not None,
        NegativePrompt.NONE: False,
    }[spec.negative_prompt]
    if takes_negative:
        params.append("negative_prompt")
    if spec.img2img is not None:
        params.append("strength")
    if loras and spec.lora:
        params += ["lora", "lora_weight"]
    return tuple(params)


def check_model_config(name: str, model: ModelConfig) -> None:
    """Raise ``ConfigError`` for a key of ``models.<name>`` its family cannot honour."""
    spec = family_spec(model.family)
    where = f"models.{name}"
    if model.single_file and not spec.single_file:
        raise ConfigError(
            f"{where}.source: single-file checkpoints are not supported for family "
            f"{model.family.value!r} ({spec.title}); only a diffusers folder or hub id is, "
            f"not one {' or '.join(SINGLE_FILE_SUFFIXES)} file"
        )
    if model.single_file and spec.single_file_transformer and model.single_file_config is None:
        # The file holds only the transformer: the text encoder, VAE, tokenizer and
        # scheduler have to come from somewhere, and no hub is asked behind the operator.
        raise ConfigError(
            f"{where}.single_file_config: a {spec.title} checkpoint file holds only the "
            "transformer; name the diffusers folder (or hub id) of the base model the rest "
            "comes from"
        )
    if model.true_cfg_scale is not None and spec.negative_prompt is not NegativePrompt.TRUE_CFG:
        raise ConfigError(
            f"{where}.true_cfg_scale: only for FLUX.1 models; {spec.title} applies a "
            "negative prompt through guidance_scale"
            if spec.negative_prompt is NegativePrompt.GUIDANCE
            else f"{where}.true_cfg_scale: {spec.title} models take no negative prompt"
        )
