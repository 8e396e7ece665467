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

Only the shape and syntax of one tag are checked here; what the values mean for a job (ranges,
allowed names, how many of a tag) is ``request.py``'s business. A valid tag is one whose view
writes it back unchanged, so numbers must be canonical decimals (``"10000"``, not ``"010000"``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

from nostr_imagegen.errors import JobRejected
from nostr_imagegen.imagejob.model import Bid, InputType, JobInput, construct_checked
from nostr_imagegen.nostr.event import Tag

__all__ = [
    "BidTag",
    "EncryptedTag",
    "InputTag",
    "OutputTag",
    "ParamTag",
    "ProviderTag",
    "RelaysTag",
    "clip_tag",
    "shorten",
    "validate_url",
]

#: Largest amount a bid may carry: all bitcoin that will ever exist, in millisats.
MAX_MSATS = 21_000_000 * 100_000_000 * 1000

_CANONICAL_UINT = re.compile(r"(?:0|[1-9][0-9]{0,18})")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# RFC 6838 restricted-name on both sides of the slash, e.g. image/png, image/svg+xml.
_MIME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_INPUT_TYPES = ", ".join(t.value for t in InputType)
# The usual URL: a scheme, a host of letters, digits, dots and hyphens, a port of up to four
# digits, then any printable ASCII after a "/", "?" or "#". Every such URL passes each check
# of validate_url, which therefore splits (slowly) only the URLs this does not match.
_AFTER_SCHEME = r"://[A-Za-z0-9.-]+(?::[0-9]{1,4})?(?:[/?#][!-~]*)?"
_PLAIN_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)" + _AFTER_SCHEME)
_STR_OR_NONE = (str, type(None))
# A dict lookup: calling the enum with a value goes through EnumType.__call__, several times slower.
_INPUT_TYPE_BY_VALUE: dict[str, InputType] = {t.value: t for t in InputType}

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


def validate_url(value: str, schemes: Collection[str], what: str, tag: Sequence[str]) -> str:
    """Check that ``value`` is an absolute URL with one of ``schemes`` and a host; return it.

    Syntax only: printable ASCII, no spaces, a known scheme, a host, a numeric port if any.
    Whether the address may be fetched is the service's safe fetcher's decision.
    """
    plain = _PLAIN_URL.fullmatch(value)
    if plain is not None and plain[1].lower() in schemes:
        return value
    # Every character from "!" to "~": ASCII, printable (no controls, no DEL) and not a space.
    if not value or not value.isascii() or not value.isprintable() or " " in value:
        raise _reject(f"{what} {shorten(value)!r} is not a URL (spaces or non-ASCII)", tag)
    try:
        parts = urlsplit(value)
        _ = parts.port  # a non-numeric or out-of-range port raises ValueError here
    except ValueError:
        raise _reject(f"{what} {shorten(value)!r} is not a valid URL", tag) from None
    if parts.scheme.lower() not in schemes:
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise _reject(f"{what} {shorten(value)!r} must start with {allowed}", tag)
    if not parts.hostname:
        raise _reject(f"{what} {shorten(value)!r} has no host", tag)
    return value


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
        size = len(tag)
        if not 3 <= size <= 5 or tag[0] != InputTag.NAME:
            _check_shape(tag, InputTag.NAME, 3, 5)  # raises, saying what is wrong
        kind = tag[2]
        input_type = _INPUT_TYPE_BY_VALUE.get(kind) if isinstance(kind, str) else None
        if input_type is None:
            raise _reject(f"input type {shorten(kind)!r} is not one of {_INPUT_TYPES}", tag)
        data = tag[1]
        relay = tag[3] if size > 3 else None
        marker = tag[4] if size > 4 else None
        values = {"data": data, "type": input_type, "relay": relay, "marker": marker}
        if type(data) is str and (
            size == 3 or (type(relay) in _STR_OR_NONE and type(marker) in _STR_OR_NONE)
        ):
            return construct_checked(JobInput, values)
        return JobInput(**values)  # not plain strings: let validation refuse or convert them


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
        return cls(mime=cls.mime_of(tag))

    @classmethod
    def mime_of(cls, tag: Sequence[str]) -> str:
        """``parse(tag).mime``, checked the same way, without building the view."""
        if len(tag) != 2 or tag[0] != cls.NAME:
            _check_shape(tag, cls.NAME, 2, 2)  # raises, saying what is wrong
        if not _MIME.fullmatch(tag[1]):
            raise _reject(f"output {shorten(tag[1])!r} is not a MIME type like image/png", tag)
        return tag[1]

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
        first, second = cls.amounts_of(tag)
        return cls(msats=first) if second is None else cls(msats=first, max_msats=second)

    @classmethod
    def amounts_of(cls, tag: Sequence[str]) -> tuple[int, int | None]:
        """``(msats, max_msats)`` of ``parse(tag)``, checked the same way, without the view."""
        if not 2 <= len(tag) <= 3 or tag[0] != cls.NAME:
            _check_shape(tag, cls.NAME, 2, 3)  # raises, saying what is wrong
        first = _canonical_uint(tag[1], "bid", tag)
        if len(tag) == 2:
            return first, None
        second = _canonical_uint(tag[2], "bid maximum", tag)
        if second < first:
            raise _reject(f"bid range {first}..{second} has its maximum below its minimum", tag)
        return first, second

    @classmethod
    def bid_of(cls, tag: Sequence[str]) -> Bid:
        """``parse(tag).to_bid()``, checked the same way, without building the view."""
        first, second = cls.amounts_of(tag)
        most = first if second is None else second
        return construct_checked(Bid, {"min_msats": first, "max_msats": most})

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
    SCHEMES: ClassVar[tuple[str, ...]] = ("wss", "ws")
    # Plain URLs (see _PLAIN_URL) with these schemes, separated by spaces (which no URL
    # holds): a whole tag of them passes validate_url, checked in one match.
    _PLAIN: ClassVar[re.Pattern[str]] = re.compile(
        "(?:{0})(?: (?:{0}))*".format(
            "(?i:" + "|".join(map(re.escape, SCHEMES)) + ")" + _AFTER_SCHEME
        ),
        re.ASCII,  # case-insensitive for ASCII letters only, as str.lower() on ASCII is
    )

    urls: tuple[str, ...]

    @classmethod
    def parse(cls, tag: Sequence[str]) -> RelaysTag:
        return cls(urls=cls.urls_of(tag))

    @classmethod
    def urls_of(cls, tag: Sequence[str]) -> tuple[str, ...]:
        """``parse(tag).urls``, checked the same way, without building the view."""
        if len(tag) < 2 or tag[0] != cls.NAME:
            _check_shape(tag, cls.NAME, 2, None)  # raises, saying what is wrong
        urls = tuple(tag[1:])
        try:
            plain = cls._PLAIN.fullmatch(" ".join(urls)) is not None
        except TypeError:  # not all strings: validate_url says what is wrong
            plain = False
        if not plain:
            for url in urls:
                validate_url(url, cls.SCHEMES, "relay", tag)
        return urls

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
        return cls(public_key=cls.public_key_of(tag), relay=tag[2] if len(tag) > 2 else None)

    @classmethod
    def public_key_of(cls, tag: Sequence[str]) -> str:
        """``parse(tag).public_key``, checked the same way, without building the view."""
        if not 2 <= len(tag) <= 3 or tag[0] != cls.NAME:
            _check_shape(tag, cls.NAME, 2, 3)  # raises, saying what is wrong
        if not _HEX64.fullmatch(tag[1]):
            raise _reject(
                f"provider key {shorten(tag[1])!r} is not 64 lowercase hex characters", tag
            )
        return tag[1]

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
