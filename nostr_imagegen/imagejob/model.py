"""The typed, validated image job: what a kind 5100 request means once parsed.

The wire form it comes from (NIP-90 + the kind 5100 page)::

    {"kind": 5100, "content": "", "tags": [
        ["i", "A purple ostrich watching the sunset", "text"],
        ["i", "https://example.com/in.jpg", "url"],          # optional: image to alter
        ["param", "model", "sdxl-turbo"],
        ["param", "lora", "pixel-art", "0.8"],                 # optional weight
        ["param", "ratio", "4:3"],                             # or ["param", "ratio", "4", "3"]
        ["param", "size", "1024x768"],                         # wins over ratio
        ["param", "negative_prompt", "broken hands"],
        ["param", "upscale", "2"],                             # legacy factor
        ["output", "image/png"], ["bid", "10000"], ["relays", "wss://..."],
        ["p", "<provider pubkey>"], ["encrypted"]]}

Every model here is frozen; nothing in them refers to a file path.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from nostr_imagegen.nostr.encryption import EncryptionScheme
from nostr_imagegen.nostr.event import Event

__all__ = [
    "Bid",
    "EncryptionScheme",
    "ImageJob",
    "InputType",
    "JobInput",
    "LoraRequest",
    "Ratio",
]


class InputType(StrEnum):
    """NIP-90 `i` tag input types."""

    TEXT = "text"
    URL = "url"
    EVENT = "event"
    JOB = "job"


class Ratio(StrEnum):
    """The seven aspect ratios of the kind 5100 page."""

    SQUARE = "1:1"
    LANDSCAPE_4_3 = "4:3"
    LANDSCAPE_16_9 = "16:9"
    LANDSCAPE_16_10 = "16:10"
    PORTRAIT_3_4 = "3:4"
    PORTRAIT_9_16 = "9:16"
    PORTRAIT_10_16 = "10:16"

    @property
    def parts(self) -> tuple[int, int]:
        """``(width part, height part)``: ``Ratio("16:9").parts == (16, 9)``."""
        width, height = self.value.split(":")
        return int(width), int(height)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JobInput(_Frozen):
    """One `i` tag: ``["i", data, type, relay?, marker?]``."""

    data: str
    type: InputType
    relay: str | None = None
    marker: str | None = None

    def to_tag(self) -> tuple[str, ...]:
        """The wire tag, with trailing optional fields left out."""
        tag: list[str] = ["i", self.data, self.type.value]
        if self.relay is not None or self.marker is not None:
            tag.append(self.relay or "")
        if self.marker is not None:
            tag.append(self.marker)
        return tuple(tag)


class LoraRequest(_Frozen):
    """A LoRA the customer asked for, by its public name; ``weight`` None means the default."""

    name: str
    weight: float | None = None


class Bid(_Frozen):
    """``["bid", msats]`` or ``["bid", min, max]``: what the customer is willing to pay."""

    min_msats: int
    max_msats: int


class ImageJob(_Frozen):
    """A parsed, validated kind 5100 request. Build it with ``parse_image_job``."""

    #: The request event id (64 hex): the key of everything that answers this job.
    id: str
    #: The customer's public key (64 hex).
    customer: str
    kind: int
    created_at: int
    prompt: str
    #: An image to alter (img2img), fetched by the service with the safe fetcher.
    image_url: str | None = None
    model: str | None = None
    loras: tuple[LoraRequest, ...] = ()
    ratio: Ratio | None = None
    #: ``(width, height)`` from ``size``; wins over ``ratio``.
    size: tuple[int, int] | None = None
    negative_prompt: str | None = None
    upscale: float | None = None
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    strength: float | None = None
    #: Requested output MIME type (``image/png``, ``image/jpeg``, ``image/webp``).
    output: str | None = None
    bid: Bid | None = None
    #: Where the customer wants answers published, besides the provider's own relays.
    relays: tuple[str, ...] = ()
    #: Providers named in `p` tags (empty: open to any provider).
    providers: tuple[str, ...] = ()
    #: Set when the params arrived encrypted; results must go back encrypted the same way.
    encryption: EncryptionScheme | None = None
    #: Every `i` tag as received (after decryption), in order.
    inputs: tuple[JobInput, ...] = ()
    #: Params this library does not interpret, kept as ``{key: (values...)}``.
    extra_params: dict[str, tuple[str, ...]] = {}
    #: The original signed request event (answers quote it and reply to it).
    request: Event

    @property
    def encrypted(self) -> bool:
        """True when the request's params were encrypted to the provider."""
        return self.encryption is not None


_Model = TypeVar("_Model", bound=_Frozen)


def construct_checked(model: type[_Model], values: dict[str, Any]) -> _Model:
    """A ``model`` instance from ``values`` that our own parser has already checked.

    For this package's parsers (not exported). ``values`` must name every field, in the
    model's field order (for ``repr``), each value of the field's type; the dict becomes the
    instance's own, so pass a fresh one. Does what pydantic's ``model_construct(**values)``
    does for trusted data without its per-field alias and default handling: several times
    faster than that, and than validating. Values that do not name exactly the model's
    fields, or a pydantic this was not checked against (``_construct_works``), are validated
    instead.
    """
    names = _FIELD_NAMES[model]
    if _CONSTRUCT_WORKS and values.keys() == names:
        return _instance(model, values, names)
    return model(**values)


def field_template(model: type[BaseModel], filled: Collection[str]) -> dict[str, Any]:
    """Every field of ``model`` in field order, for ``construct_filled``.

    ``filled``: the fields the caller fills in on every copy; they are None here, the others
    hold their default. A field without a default, or with a mutable one, must be among
    them: checked here, once, so that a field added to the model cannot go unfilled.
    """
    template: dict[str, Any] = {}
    for name, info in model.__pydantic_fields__.items():
        default = info.get_default(call_default_factory=False)
        if name not in filled and (info.is_required() or not _immutable(default)):
            raise TypeError(f"{model.__name__}.{name} has no shared default: fill it in")
        template[name] = None if name in filled else default
    return template


def _immutable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def construct_filled(model: type[_Model], values: dict[str, Any]) -> _Model:
    """``construct_checked`` for a copy of ``field_template(model, filled)``, filled in.

    Much cheaper for a model with many fields: copying the template costs less than
    building a dict, and as the names come from the model no name needs comparing; a
    filled-in copy can only gain names (a misspelt one), which makes it longer than the
    model's fields and sends it to validation.
    """
    names = _FIELD_NAMES[model]
    if _CONSTRUCT_WORKS and len(values) == len(names):
        return _instance(model, values, names)
    return model(**values)


class _FieldNames(dict[type[BaseModel], set[str]]):
    """Each model's field names, as a set, looked up once (through pydantic's metaclass)."""

    def __missing__(self, model: type[BaseModel]) -> set[str]:
        names = self[model] = set(model.__pydantic_fields__)
        return names


_FIELD_NAMES = _FieldNames()


def _instance(model: type[_Model], values: dict[str, Any], names: set[str]) -> _Model:
    """What pydantic's model_construct builds from ``values``, holding every field in order."""
    instance = _new(model)
    # The four instance slots that pydantic's own model_construct and __copy__ fill.
    _set_dict(instance, values)
    _set_fields_set(instance, names.copy())  # every field counts as set
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


def _slot_setter(name: str) -> Callable[[BaseModel, Any], None]:
    """The setter of BaseModel's instance slot ``name``: past the frozen models' own
    __setattr__, and cheaper than ``object.__setattr__`` (no lookup of the name)."""
    setter: Callable[[BaseModel, Any], None] | None = getattr(
        vars(BaseModel).get(name), "__set__", None
    )
    if setter is None:  # another pydantic's layout: _construct_works() will say no
        return lambda instance, value: object.__setattr__(instance, name, value)
    return setter


_new = object.__new__  # what BaseModel.__new__ is
_set_dict = _slot_setter("__dict__")
_set_fields_set = _slot_setter("__pydantic_fields_set__")
_set_extra = _slot_setter("__pydantic_extra__")
_set_private = _slot_setter("__pydantic_private__")


def _construct_works() -> bool:
    """Whether ``_instance`` builds exactly what validation builds, with this pydantic."""
    values: dict[str, Any] = {"data": "x", "type": InputType.URL, "relay": "r", "marker": None}
    try:
        built, validated = construct_checked(JobInput, dict(values)), JobInput(**values)
        return (
            built == validated
            and repr(built) == repr(validated)
            and built.model_fields_set == validated.model_fields_set
            and built.model_dump() == validated.model_dump()
            and hash(built) == hash(validated)
        )
    except Exception:  # pydantic internals differ: validate every time instead
        return False


_CONSTRUCT_WORKS = True  # on trial, for the one call below
_CONSTRUCT_WORKS = _construct_works()
