"""One generated image as a link with NIP-92 ``imeta`` metadata.

The tag, with only the fields that are known (NIP-92 asks for ``url`` and at least one more)::

    ["imeta", "url https://cdn.example/ab12.png", "m image/png",
     "x <sha256 of the file, 64 hex>", "dim 1024x768", "size 482113"]

``ImageLink.from_imeta_tag(link.to_imeta_tag()) == link``. The parser reads the first value
of each key it knows and ignores the others (``blurhash``, ``alt``, ``fallback``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from nostr_imagegen.errors import EventError
from nostr_imagegen.imagejob._answer_tags import check_url
from nostr_imagegen.nostr.event import Tag
from nostr_imagegen.nostr.hexkeys import is_hex64
from nostr_imagegen.nostr.urls import HTTP_SCHEMES

__all__ = ["MAX_IMETA_ENTRIES", "ImageLink"]

#: An imeta tag with more entries than this is refused when parsing.
MAX_IMETA_ENTRIES = 64
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_DIM = re.compile(r"([0-9]{1,6})x([0-9]{1,6})")
_SIZE = re.compile(r"[0-9]{1,16}")

Pixels = Annotated[int, Strict(), Field(ge=1, le=100_000)]
Bytes = Annotated[int, Strict(), Field(ge=0, le=2**53)]


class ImageLink(BaseModel):
    """A link to one image and what is known about the file behind it.

    ``width`` and ``height`` come together or not at all. Bad values raise ``EventError``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    mime: str | None = None
    sha256: str | None = None
    width: Pixels | None = None
    height: Pixels | None = None
    size_bytes: Bytes | None = None

    def __init__(
        self,
        *,
        url: str,
        mime: str | None = None,
        sha256: str | None = None,
        width: int | None = None,
        height: int | None = None,
        size_bytes: int | None = None,
    ) -> None:
        try:
            super().__init__(
                url=url,
                mime=mime,
                sha256=sha256,
                width=width,
                height=height,
                size_bytes=size_bytes,
            )
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "image link"
            raise EventError(f"invalid image link: {where}: {first['msg']}") from None

    @model_validator(mode="after")
    def _check(self) -> ImageLink:
        # EventError is not a ValueError, so it passes through pydantic unchanged.
        check_url(self.url, "image url", HTTP_SCHEMES)
        if self.mime is not None and not _MIME.fullmatch(self.mime):
            raise ValueError("mime must be a lowercase type/subtype such as image/png")
        if self.sha256 is not None and not is_hex64(self.sha256):
            raise ValueError("sha256 must be 64 lowercase hex characters")
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together")
        return self

    @property
    def has_metadata(self) -> bool:
        """True when there is something besides the url (NIP-92 needs one more field)."""
        return any(
            value is not None for value in (self.mime, self.sha256, self.width, self.size_bytes)
        )

    def to_imeta_tag(self) -> Tag:
        """The NIP-92 tag: url first, then m, x, dim, size, each only when known."""
        if not self.has_metadata:
            raise EventError("an imeta tag needs at least one field besides url (NIP-92)")
        entries = ["imeta", f"url {self.url}"]
        if self.mime is not None:
            entries.append(f"m {self.mime}")
        if self.sha256 is not None:
            entries.append(f"x {self.sha256}")
        if self.width is not None and self.height is not None:
            entries.append(f"dim {self.width}x{self.height}")
        if self.size_bytes is not None:
            entries.append(f"size {self.size_bytes}")
        return tuple(entries)

    @classmethod
    def from_imeta_tag(cls, tag: Sequence[str]) -> ImageLink:
        """Parse an ``imeta`` tag read from the network; raises ``EventError`` when malformed.

        A tag with only a ``url`` is accepted here (be liberal in what you read).
        """
        if not tag or tag[0] != "imeta":
            raise EventError("not an imeta tag")
        if len(tag) > MAX_IMETA_ENTRIES + 1:
            raise EventError(f"imeta tag has more than {MAX_IMETA_ENTRIES} entries")
        fields: dict[str, str] = {}
        for entry in tag[1:]:
            key, _, value = entry.partition(" ")
            fields.setdefault(key, value.strip())
        if "url" not in fields:
            raise EventError("imeta tag has no url entry")
        values: dict[str, Any] = {"url": fields["url"]}
        if "m" in fields:
            values["mime"] = fields["m"].lower()
        if "x" in fields:
            values["sha256"] = fields["x"].lower()
        if "dim" in fields:
            dim = _DIM.fullmatch(fields["dim"])
            if dim is None:
                raise EventError(f"imeta dim must be WIDTHxHEIGHT, got {fields['dim'][:32]!r}")
            values["width"], values["height"] = int(dim[1]), int(dim[2])
        if "size" in fields:
            if not _SIZE.fullmatch(fields["size"]):
                raise EventError("imeta size must be a whole number of bytes")
            values["size_bytes"] = int(fields["size"])
        return cls(**values)
