"""Typed views of the NIP-90 request tags that round-trip: ``View.parse(t).to_tag() == tuple(t)``.

Tags stay plain string arrays on the wire; these views check one tag's shape and give it
types. Each ``parse`` raises ``JobRejected`` (carrying the tag) for a malformed tag::

    ["i", "<data>", "text|url|event|job", "<relay>"?, "<marker>"?]   InputTag -> JobInput
    ["param", "<key>", "<value>", ...]                                ParamTag
    ["output", "<mime type>"]                                         OutputTag
    ["bid", "<msats>"]  or  ["bid", "<min msats>", "<max msats>"]     BidTag
    ["relays", "wss://...", ...]                                      RelaysTag
    ["p", "<provider pubkey hex>", "<relay>"?]                        ProviderTag
    ["encrypted"]                                                     EncryptedTag

Each view has one ``parse`` (a single check of the tag's name and size, then plain checks of
its values) and one ``to_tag``; ``InputTag.parse`` gives the model's ``JobInput``, whose
``to_tag`` is the inverse. Only the shape and syntax of one tag are checked here; what the
values mean for a job (ranges, allowed names, how many of a tag) is ``request.py``'s business.
A valid tag is one whose view writes it back unchanged, so numbers must be canonical decimals
(``"10000"``, not ``"010000"``). Relay URLs are checked by nostr_imagegen.nostr.urls, public
keys by nostr_imagegen.nostr.hexkeys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from pydantic import ValidationError

from nostr_imagegen.errors import JobRejected
from nostr_imagegen.imagejob.model import Bid, InputType, JobInput
from nostr_imagegen.nostr.event import Tag
from nostr_imagegen.nostr.hexkeys import is_hex64
from nostr_imagegen.nostr.kinds import MAX_MSATS
from nostr_imagegen.nostr.urls import RELAY_SCHEMES, url_problem

__all__ = [
    "MAX_MSATS",
    "BidTag",
    "EncryptedTag",
    "InputTag",
    "OutputTag",
    "ParamTag",
    "ProviderTag",
    "RelaysTag",
    "clip_tag",
    "shorten",
]

_CANONICAL_UINT = re.compile(r"0|[1-9][0-9]{0,18}")
# RFC 6838 restricted-name on both sides of the slash, e.g. image/png, image/svg+xml.
_MIME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_INPUT_TYPES = ", ".join(t.value for t in InputType)

# What an error message may quote of a customer's value or tag, so that an error feedback
# event stays small whatever the request carried.
_SHOW_CHARS = 80
_CLIP_ELEMENTS = 6


def shorten(value: str, limit: int = _SHOW_CHARS) -> str:
    """``value`` cut to ``limit`` characters (an ellipsis marks the cut), for messages."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def clip_tag(tag: Sequence[str]) -> tuple[str, ...]:
    """A tag small enough to quote in an error: long elements and long tags are cut."""
    clipped = tuple(shorten(str(element)) for element in tag[:_CLIP_ELEMENTS])
    return (*clipped, "…") if len(tag) > _CLIP_ELEMENTS else clipped


def _reject(reason: str, tag: Sequence[str]) -> JobRejected:
    return JobRejected(reason, tag=clip_tag(tag))


def _values(count: int) -> str:
    return "no values" if count == 0 else "1 value" if count == 1 else f"{count} values"


def _check_shape(tag: Sequence[str], name: str, least: int, most: int | None) -> None:
    """Raise unless ``tag`` is named ``name`` and has ``least`` to ``most`` elements."""
    if not tag or tag[0] != name:
        raise _reject(f"expected a tag named {name!r}", tag)
    if len(tag) < least or (most is not None and len(tag) > most):
        if most is None:
            wanted = f"at least {_values(least - 1)}"
        elif most == least:
            wanted = _values(least - 1)
        else:
            wanted = f"{least - 1} to {most - 1} values"
        raise _reject(f"a {name!r} tag takes {wanted}, got {len(tag) - 1}", tag)


def _canonical_uint(value: str, what: str, tag: Sequence[str]) -> int:
    if not _CANONICAL_UINT.fullmatch(value):
        raise _reject(f"{what} {shorten(value)!r} is not a whole number of millisats", tag)
    amount = int(value)
    if amount > MAX_MSATS:
        raise _reject(f"{what} {amount} is more millisats than there will ever be", tag)
    return amount


class InputTag:
    """``["i", data, type, relay?, marker?]``; parses into the model's ``JobInput``.

    ``JobInput.to_tag()`` is the inverse: ``InputTag.parse(t).to_tag() == tuple(t)``.
    """

    NAME: ClassVar[str] = "i"

    @staticmethod
    def parse(tag: Sequence[str]) -> JobInput:
        _check_shape(tag, InputTag.NAME, 3, 5)
        try:
            input_type = InputType(tag[2])
        except ValueError:
            raise _reject(
                f"input type {shorten(str(tag[2]))!r} is not one of {_INPUT_TYPES}", tag
            ) from None
        try:
            return JobInput(
                data=tag[1],
                type=input_type,
                relay=tag[3] if len(tag) > 3 else None,
                marker=tag[4] if len(tag) > 4 else None,
            )
        except ValidationError:
            raise _reject("an 'i' tag holds strings only", tag) from None


@dataclass(frozen=True, slots=True)
class ParamTag:
    """``["param", key, value, ...]``: one key and one or more values, all kept as strings."""

    NAME: ClassVar[str] = "param"

    key: str
    values: tuple[str, ...]

    @property
    def value(self) -> str:
        """The first value (most params take exactly one)."""
        return self.values[0]

    @classmethod
    def parse(cls, tag: Sequence[str]) -> ParamTag:
        _check_shape(tag, cls.NAME, 3, None)
        return cls(key=tag[1], values=tuple(tag[2:]))

    def to_tag(self) -> Tag:
        return (self.NAME, self.key, *self.values)


@dataclass(frozen=True, slots=True)
class OutputTag:
    """``["output", mime]``: the MIME type the customer wants the result in."""

    NAME: ClassVar[str] = "output"

    mime: str

    @classmethod
    def parse(cls, tag: Sequence[str]) -> OutputTag:
        _check_shape(tag, cls.NAME, 2, 2)
        if not _MIME.fullmatch(tag[1]):
            raise _reject(f"output {shorten(tag[1])!r} is not a MIME type like image/png", tag)
        return cls(mime=tag[1])

    def to_tag(self) -> Tag:
        return (self.NAME, self.mime)


@dataclass(frozen=True, slots=True)
class BidTag:
    """``["bid", msats]`` or ``["bid", min_msats, max_msats]`` (some clients send a range)."""

    NAME: ClassVar[str] = "bid"

    msats: int
    max_msats: int | None = None

    @classmethod
    def parse(cls, tag: Sequence[str]) -> BidTag:
        _check_shape(tag, cls.NAME, 2, 3)
        least = _canonical_uint(tag[1], "bid", tag)
        if len(tag) == 2:
            return cls(msats=least)
        most = _canonical_uint(tag[2], "bid maximum", tag)
        if most < least:
            raise _reject(f"bid range {least}..{most} has its maximum below its minimum", tag)
        return cls(msats=least, max_msats=most)

    def to_tag(self) -> Tag:
        if self.max_msats is None:
            return (self.NAME, str(self.msats))
        return (self.NAME, str(self.msats), str(self.max_msats))

    def to_bid(self) -> Bid:
        """The job's ``Bid``: a single amount is both the least and the most offered."""
        most = self.msats if self.max_msats is None else self.max_msats
        return Bid(min_msats=self.msats, max_msats=most)


@dataclass(frozen=True, slots=True)
class RelaysTag:
    """``["relays", url, ...]``: where the customer wants answers published (ws/wss only)."""

    NAME: ClassVar[str] = "relays"

    urls: tuple[str, ...]

    @classmethod
    def parse(cls, tag: Sequence[str]) -> RelaysTag:
        _check_shape(tag, cls.NAME, 2, None)
        for url in tag[1:]:
            problem = url_problem(url, RELAY_SCHEMES)
            if problem is not None:
                raise _reject(f"relay {shorten(url)!r} {problem}", tag)
        return cls(urls=tuple(tag[1:]))

    def to_tag(self) -> Tag:
        return (self.NAME, *self.urls)


@dataclass(frozen=True, slots=True)
class ProviderTag:
    """``["p", pubkey, relay?]``: a service provider the customer addressed (64 lowercase hex)."""

    NAME: ClassVar[str] = "p"

    public_key: str
    relay: str | None = None

    @classmethod
    def parse(cls, tag: Sequence[str]) -> ProviderTag:
        _check_shape(tag, cls.NAME, 2, 3)
        if not is_hex64(tag[1]):
            raise _reject(
                f"provider key {shorten(tag[1])!r} is not 64 lowercase hex characters", tag
            )
        return cls(public_key=tag[1], relay=tag[2] if len(tag) > 2 else None)

    def to_tag(self) -> Tag:
        if self.relay is None:
            return (self.NAME, self.public_key)
        return (self.NAME, self.public_key, self.relay)


@dataclass(frozen=True, slots=True)
class EncryptedTag:
    """``["encrypted"]``: the `i` and `param` tags are encrypted in the event's content."""

    NAME: ClassVar[str] = "encrypted"

    @classmethod
    def parse(cls, tag: Sequence[str]) -> EncryptedTag:
        _check_shape(tag, cls.NAME, 1, 1)
        return cls()

    def to_tag(self) -> Tag:
        return (self.NAME,)
