"""NIP-89 handler information (kind 31990): how a DVM announces what it offers.

The wire form (content is a JSON string; shown expanded here)::

    {"kind": 31990,
     "tags": [["d", "my-image-dvm"], ["k", "5100"]],
     "content": {"name": "Ostrich Painter",
                 "about": "SDXL images from a prompt",
                 "picture": "https://example.com/avatar.png",
                 "image": "https://example.com/avatar.png",
                 "encryptionSupported": true,
                 "nip90Params": {
                     "model": {"required": false, "values": ["sdxl-turbo", "sd15"]},
                     "lora": {"required": false, "values": ["pixel-art"]},
                     "ratio": {"required": false,
                               "values": ["1:1", "4:3", "16:9", "16:10", "3:4", "9:16", "10:16"]},
                     "size": {"required": false, "values": []},
                     "negative_prompt": {"required": false, "values": []}}}}

``name``/``about``/``picture`` are the NIP-01 metadata fields NIP-89 asks for. The DVM NIP-89
page shows ``image`` and ``encryptionSupported``; ``image`` repeats ``picture`` so clients of
either spelling show it. ``nip90Params`` (one entry per param: ``required`` and the accepted
``values``, an empty list meaning free text) is the shape the DVM ecosystem's clients
(nostrdvm, DVMDash) read; a ``model`` or ``lora`` entry appears only when some are offered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from nostr_imagegen.errors import EventError
from nostr_imagegen.imagejob import _answer_tags as wire
from nostr_imagegen.imagejob.model import Ratio
from nostr_imagegen.nostr.event import Tag, UnsignedEvent
from nostr_imagegen.nostr.kinds import HANDLER_INFO_KIND, IMAGE_GENERATION_KIND
from nostr_imagegen.nostr.urls import HTTP_SCHEMES

__all__ = ["HANDLER_INFO_KIND", "MAX_IDENTIFIER_CHARS", "build_handler_info"]

MAX_IDENTIFIER_CHARS = 256
_ALL_RATIOS = tuple(ratio.value for ratio in Ratio)
_RESERVED = ("name", "about", "picture", "image", "encryptionSupported", "nip90Params")


def _param_entry(key: str, spec: Any) -> Any:
    """``{"required": false, "values": [...]}`` from a list of values; a mapping as given."""
    if isinstance(spec, Mapping):
        return dict(spec)
    if isinstance(spec, Sequence) and not isinstance(spec, str | bytes):
        return {"required": False, "values": list(spec)}
    raise EventError(f"param {key!r}: give a list of accepted values or a mapping")


def _names(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, str) or not all(isinstance(v, str) and v.strip() for v in values):
        raise EventError(f"{what} must be a sequence of non-empty strings")
    return list(dict.fromkeys(values))


def build_handler_info(
    *,
    identifier: str,
    kinds: Sequence[int] = (IMAGE_GENERATION_KIND,),
    name: str,
    about: str,
    picture: str | None = None,
    models: Sequence[str] = (),
    loras: Sequence[str] = (),
    ratios: Sequence[str] = _ALL_RATIOS,
    params: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    encryption_supported: bool = True,
) -> UnsignedEvent:
    """A kind 31990 template announcing a DVM (see the module docstring for the shape).

    - ``identifier``: the ``d`` tag; keep it stable, it is what makes the event replaceable.
    - ``kinds``: one ``k`` tag each; every one must be a job request kind (5000..5999).
    - ``ratios``: each one of the seven ratios of the kind 5100 page.
    - ``params``: more ``nip90Params`` entries (or replacements), each a list of accepted
      values or a ready ``{"required": ..., "values": ...}`` mapping; ``None`` removes an
      entry written by default (``{"size": None}`` for a DVM that cannot honour sizes).
    - ``extra``: more top-level content fields (``lud16``, ``website``...); they may not
      reuse a field this function writes.
    """
    if not isinstance(identifier, str) or not identifier.strip():
        raise EventError("identifier (the d tag) must be a non-empty string")
    if len(identifier) > MAX_IDENTIFIER_CHARS:
        raise EventError(f"identifier is longer than {MAX_IDENTIFIER_CHARS} characters")
    kind_list = list(dict.fromkeys(kinds))
    if not kind_list:
        raise EventError("a handler must announce at least one request kind")
    for kind in kind_list:
        if isinstance(kind, bool) or not isinstance(kind, int):
            raise EventError(f"kinds must be ints, got {kind!r}")
        wire.check_request_kind(kind)
    for field, value in (("name", name), ("about", about)):
        if not isinstance(value, str) or not value.strip():
            raise EventError(f"{field} must be a non-empty string")
    ratio_list = _names(ratios, "ratios")
    unknown = [r for r in ratio_list if r not in _ALL_RATIOS]
    if unknown:
        raise EventError(f"unknown ratio(s) {unknown}; allowed: {' '.join(_ALL_RATIOS)}")

    nip90_params: dict[str, Any] = {}
    if models:
        nip90_params["model"] = {"required": False, "values": _names(models, "models")}
    if loras:
        nip90_params["lora"] = {"required": False, "values": _names(loras, "loras")}
    if ratio_list:
        nip90_params["ratio"] = {"required": False, "values": ratio_list}
    nip90_params["size"] = {"required": False, "values": []}
    nip90_params["negative_prompt"] = {"required": False, "values": []}
    for key, spec in (params or {}).items():
        if not isinstance(key, str) or not key:
            raise EventError("param names must be non-empty strings")
        if spec is None:
            nip90_params.pop(key, None)  # None withdraws a param announced by default
        else:
            nip90_params[key] = _param_entry(key, spec)

    info: dict[str, Any] = {"name": name, "about": about}
    if picture is not None:
        wire.check_url(picture, "picture", HTTP_SCHEMES)
        info["picture"] = picture
        info["image"] = picture
    info["encryptionSupported"] = bool(encryption_supported)
    info["nip90Params"] = nip90_params
    for key, value in (extra or {}).items():
        if key in _RESERVED:
            raise EventError(f"extra may not set {key!r}; use the matching argument")
        info[key] = value
    try:
        content = json.dumps(info, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EventError(f"handler information is not JSON-serializable: {exc}") from None

    tags: list[Tag] = [("d", identifier)]
    tags.extend(("k", str(kind)) for kind in kind_list)
    return UnsignedEvent(kind=HANDLER_INFO_KIND, tags=tuple(tags), content=content)
