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

Every model here is frozen and hashable, down to ``ImageJob.extra_params`` (an
``ExtraParams``, a read-only mapping); nothing in them refers to a file path. Model and LoRA
names follow ``NAME_PATTERN``, the one rule shared with the engine configuration, so a name
an operator may offer is exactly a name a request may ask for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic_core import core_schema

from nostr_imagegen.nostr.encryption import EncryptionScheme
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.nostr.hexkeys import Hex64

__all__ = [
    "NAME_PATTERN",
    "NAME_RULE",
    "Bid",
    "EncryptionScheme",
    "ExtraParams",
    "ImageJob",
    "InputType",
    "JobInput",
    "LoraRequest",
    "Ratio",
    "is_valid_name",
]

#: A model or LoRA name: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or
#: digit, with no '..' anywhere (a dot is never followed by another): so never a path, a
#: parent folder or a hub repository. Use ``is_valid_name``, which matches the whole string.
NAME_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.)){0,63}")
#: ``NAME_PATTERN`` in words, for error messages.
NAME_RULE = (
    "names are 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit "
    "and never holding '..'"
)


def is_valid_name(value: object) -> bool:
    """True for a str that is a model or LoRA name as a whole (``NAME_PATTERN``)."""
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


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


class ExtraParams(Mapping[str, tuple[str, ...]]):
    """The params a job carries that this library does not interpret: ``{key: (values...)}``.

    A read-only, hashable mapping: ``params["sampler"]``, ``params.get("sampler")``, ``in``,
    iteration and ``==`` with a dict work as on a dict; assigning does not. Validated as a
    ``dict[str, tuple[str, ...]]`` where an ``ImageJob`` is built, and dumped as a dict.
    """

    __slots__ = ("_params",)

    def __init__(self, params: Mapping[str, Sequence[str]] | None = None) -> None:
        items = {} if params is None else dict(params)
        for key, values in items.items():
            if not isinstance(key, str) or isinstance(values, str):
                raise TypeError("extra params map a str key to a sequence of str values")
            if not all(isinstance(value, str) for value in values):
                raise TypeError(f"the values of extra param {key!r} must be str")
        self._params: dict[str, tuple[str, ...]] = {
            key: tuple(values) for key, values in items.items()
        }

    def __getitem__(self, key: str) -> tuple[str, ...]:
        return self._params[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __hash__(self) -> int:
        return hash(frozenset(self._params.items()))

    def __repr__(self) -> str:
        return f"ExtraParams({self._params!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        as_dict = handler.generate_schema(dict[str, tuple[str, ...]])
        from_dict = core_schema.no_info_after_validator_function(cls, as_dict)
        return core_schema.json_or_python_schema(
            json_schema=from_dict,
            python_schema=core_schema.union_schema(
                [core_schema.is_instance_schema(cls), from_dict]
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                dict, return_schema=as_dict
            ),
        )


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
    """A parsed, validated kind 5100 request. Build it with ``parse_image_job``.

    Frozen and hashable: ``hash(job)`` works and no field can be changed in place.
    """

    #: The request event id (64 hex): the key of everything that answers this job.
    id: Hex64
    #: The customer's public key (64 hex).
    customer: Hex64
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
    providers: tuple[Hex64, ...] = ()
    #: Set when the params arrived encrypted; results must go back encrypted the same way.
    encryption: EncryptionScheme | None = None
    #: Every `i` tag as received (after decryption), in order.
    inputs: tuple[JobInput, ...] = ()
    #: Params this library does not interpret, read-only: ``job.extra_params["sampler"]``
    #: is ``("euler_a",)``.
    extra_params: ExtraParams = ExtraParams()
    #: The original signed request event (answers quote it and reply to it).
    request: Event

    @property
    def encrypted(self) -> bool:
        """True when the request's params were encrypted to the provider."""
        return self.encryption is not None
