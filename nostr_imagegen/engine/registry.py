"""What a request may ask for: the operator's model and LoRA names, checked against the limits.

    ["param", "model", "sdxl-turbo"]        -> resolve_model("sdxl-turbo")
    ["param", "lora", "pixel-art", "0.8"]   -> resolve_loras([LoraRequest("pixel-art", 0.8)], ...)

Every refusal is a ``JobRejected`` carrying the offending ``param`` tag and a reason that
lists what is offered, so the customer can fix the request. Pure: no torch here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from nostr_imagegen.engine_config import EngineConfig, LoraConfig, ModelConfig
from nostr_imagegen.errors import JobRejected
from nostr_imagegen.imagejob.dimensions import ModelFamily
from nostr_imagegen.imagejob.model import LoraRequest

__all__ = ["Registry"]


def _format_weight(weight: float) -> str:
    return repr(weight) if not weight.is_integer() else str(int(weight))


def _lora_tag(request: LoraRequest) -> tuple[str, ...]:
    tag = ["param", "lora", request.name]
    if request.weight is not None:
        tag.append(_format_weight(request.weight))
    return tuple(tag)


class Registry:
    """Looks request names up in an ``EngineConfig``."""

    def __init__(self, config: EngineConfig) -> None:
        self._config = config

    @property
    def config(self) -> EngineConfig:
        return self._config

    def model_names(self) -> list[str]:
        """Offered model names, the default first."""
        default = self._config.default_model
        return [default, *(name for name in self._config.models if name != default)]

    def lora_names(self, family: ModelFamily | None = None) -> list[str]:
        """Offered LoRA names, all of them or those for ``family``."""
        return [
            name
            for name, lora in self._config.loras.items()
            if family is None or lora.family == family
        ]

    def resolve_model(self, name: str | None) -> tuple[str, ModelConfig]:
        """The model a request asked for (``None``: the default) as ``(name, config)``."""
        if name is None:
            name = self._config.default_model
        model = self._config.models.get(name)
        if model is None:
            raise JobRejected(
                f"model {name!r} is not offered here; choose one of "
                f"{', '.join(self.model_names())}",
                tag=("param", "model", name),
            )
        return name, model

    def lora(self, name: str) -> LoraConfig:
        """The configuration of an offered LoRA (KeyError if unknown)."""
        return self._config.loras[name]

    def resolve_loras(
        self, requests: Sequence[LoraRequest], family: ModelFamily
    ) -> list[tuple[str, float]]:
        """``[(name, weight)]`` for the requested LoRAs, in request order.

        A LoRA without a weight gets the operator's default weight for it. Rejected: more
        LoRAs than ``limits.max_loras``, a name asked for twice, an unknown name, a LoRA of
        another model family, a weight outside ``[-max_lora_weight, max_lora_weight]``.
        """
        limits = self._config.limits
        if len(requests) > limits.max_loras:
            names = ", ".join(request.name for request in requests)
            raise JobRejected(
                f"{len(requests)} LoRAs asked for ({names}); at most {limits.max_loras} "
                "per job here",
                tag=_lora_tag(requests[limits.max_loras]),
            )
        resolved: list[tuple[str, float]] = []
        seen: set[str] = set()
        for request in requests:
            tag = _lora_tag(request)
            if request.name in seen:
                raise JobRejected(f"LoRA {request.name!r} is asked for twice", tag=tag)
            seen.add(request.name)
            lora = self._config.loras.get(request.name)
            if lora is None:
                offered = self.lora_names(family)
                choice = f"choose from {', '.join(offered)}" if offered else "none are offered"
                raise JobRejected(
                    f"LoRA {request.name!r} is not offered here for {family.value} models; "
                    + choice,
                    tag=tag,
                )
            if lora.family != family:
                offered = self.lora_names(family)
                choice = f"choose from {', '.join(offered)}" if offered else "none are offered"
                raise JobRejected(
                    f"LoRA {request.name!r} is for {lora.family.value} models, not "
                    f"{family.value}; for this model {choice}",
                    tag=tag,
                )
            weight = lora.weight if request.weight is None else float(request.weight)
            bound = limits.max_lora_weight
            if not (math.isfinite(weight) and -bound <= weight <= bound):
                raise JobRejected(
                    f"LoRA weight {weight} for {request.name!r} is out of bounds; use "
                    f"{_format_weight(-bound)} to {_format_weight(bound)}",
                    tag=tag,
                )
            resolved.append((request.name, weight))
        return resolved
