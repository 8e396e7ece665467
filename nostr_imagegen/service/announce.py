"""NIP-89: tell clients what this DVM offers (kind 31990), at start and every few hours.

The event is replaceable (its ``d`` tag is ``Announcement.identifier``); the models, LoRAs
and ratios in its ``nip90Params`` come from ``Engine.offered()`` (content shown expanded;
the full shape is in ``imagejob.handler_info``)::

    {"kind": 31990, "tags": [["d", "nostr-imagegen"], ["k", "5100"]],
     "content": {"name": "My DVM", "about": "...",
                 "nip90Params": {"model": {"required": false, "values": ["sdxl-turbo"]},
                                 "ratio": {"required": false, "values": ["1:1", "4:3"]},
                                 "sampler": {"required": false, "values": ["euler_a", ...]},
                                 "num_images": {"required": false, "values": ["1", "2"]}, ...},
                 "modelLimits": {"sdxl-turbo": {"samplers": ["euler_a"], "max_images": 2}},
                 "models": [{"name": "flux-schnell", "family": "flux",
                             "params": ["model", "ratio", "size", ..., "strength"],
                             "ignores": ["negative_prompt"], "max_size": "1024x1024"}]}}

``sampler`` and ``num_images`` list what at least one model takes; ``modelLimits`` says per
model which samplers it takes and how many images one job may ask of it. ``models`` says per
model what it takes: its family, the request params it applies, the params it accepts and
drops (its ``ignore_unsupported``), and the largest square it makes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from nostr_imagegen.errors import NostrImagegenError
from nostr_imagegen.imagejob.results import build_handler_info
from nostr_imagegen.nostr.event import UnsignedEvent
from nostr_imagegen.service.options import Announcement
from nostr_imagegen.service.outbox import Outbox
from nostr_imagegen.service.seams import OfferLike

__all__ = ["announce_forever", "handler_info_template"]

logger = logging.getLogger(__name__)

#: However short ``refresh_hours`` is, at most one announcement a minute.
_MIN_REFRESH_S = 60.0


def handler_info_template(
    announcement: Announcement, offered: OfferLike, kinds: Sequence[int]
) -> UnsignedEvent:
    """The kind 31990 template for ``announcement`` and what the engine ``offered``."""
    models = [model.name for model in offered.models]
    loras = [lora.name for lora in offered.loras]
    ratios = [ratio.value for ratio in offered.ratios]
    kwargs: dict[str, Any] = {}
    if ratios:
        kwargs["ratios"] = ratios
    params, limits = _sampler_and_image_params(offered)
    extra = dict(announcement.extra or {})
    if limits and "modelLimits" not in extra:
        extra["modelLimits"] = limits
    if params:
        kwargs["params"] = params
    details = [_model_details(model) for model in offered.models]
    if any(details):
        extra.setdefault("models", [entry for entry in details if entry])
    return build_handler_info(
        identifier=announcement.identifier,
        kinds=kinds,
        name=announcement.name,
        about=announcement.about,
        picture=announcement.picture,
        models=models,
        loras=loras,
        extra=extra or None,
        **kwargs,
    )


def _sampler_and_image_params(
    offered: OfferLike,
) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """``nip90Params`` for ``sampler`` and ``num_images`` (what any model takes), and each
    model's own samplers and maximum number of images. Offers without these (an embedder's
    engine) give neither."""
    per_model: dict[str, dict[str, Any]] = {}
    for model in offered.models:
        samplers = getattr(model, "samplers", None)
        max_images = getattr(model, "max_images", None)
        if samplers is None or not isinstance(max_images, int):
            continue
        per_model[model.name] = {"samplers": list(samplers), "max_images": max_images}
    if not per_model:
        return {}, {}
    samplers = list(dict.fromkeys(s for limit in per_model.values() for s in limit["samplers"]))
    most = max(limit["max_images"] for limit in per_model.values())
    params: dict[str, list[str]] = {"num_images": [str(n) for n in range(1, most + 1)]}
    if samplers:
        params["sampler"] = samplers
    return params, per_model


def _model_details(model: Any) -> dict[str, Any]:
    """``{"name", "family", "params", "ignores", "max_size"}`` for an engine's
    ``OfferedModel``; empty for an offer that does not say (a custom engine)."""
    params = getattr(model, "params", ())
    if not params:
        return {}
    entry: dict[str, Any] = {
        "name": model.name,
        "family": str(getattr(model, "family", "")),
        "params": list(params),
    }
    ignores = list(getattr(model, "ignores", ()))
    if ignores:
        entry["ignores"] = ignores  # accepted in a request, then dropped
    max_size = getattr(model, "max_size", "")
    if max_size:
        entry["max_size"] = max_size
    return entry


async def announce_forever(
    outbox: Outbox, template: Callable[[], UnsignedEvent], refresh_hours: float
) -> None:
    """Sign and publish ``template()`` now and every ``refresh_hours``, until cancelled."""
    while True:
        try:
            event = outbox.sign(template())
            if await outbox.publish(event):
                logger.info("announced the DVM (NIP-89 %.12s)", event.id)
        except NostrImagegenError as exc:
            logger.warning("cannot announce the DVM: %s", exc)
        await asyncio.sleep(max(_MIN_REFRESH_S, refresh_hours * 3600.0))
