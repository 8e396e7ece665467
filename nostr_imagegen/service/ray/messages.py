"""What crosses between the front and a Ray worker: plain picklable values, no torch, no PIL.

Front to worker, one ``WireTask`` per job of a ``run`` call::

    WireTask(job=ImageJob(...), init_image=b"\\x89PNG...")   # the fetched input, encoded

Worker to front, the stream of one ``run`` call, in order::

    Progress(job_id, step, total)          # as the denoising steps happen, any job
    Outcome(job_id, images=(...), error=None)   # one per job: its encoded images ...
    Outcome(job_id, images=(), error=WireError("cancelled", "..."))  # ... or its error
    Done(loaded_models=("tiny",), loads=1)  # last: what the worker holds now (affinity)

``to_error``/``from_error`` are the one mapping between our exceptions and their wire form.
"""

from __future__ import annotations

from dataclasses import dataclass

from nostr_imagegen.errors import (
    EngineError,
    EngineUnavailable,
    JobCancelled,
    JobRejected,
    NostrImagegenError,
)
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.service.ledger import StoredImage

__all__ = [
    "Done",
    "Outcome",
    "Progress",
    "WireError",
    "WireImage",
    "WireTask",
    "from_error",
    "to_error",
]


@dataclass(frozen=True, slots=True)
class WireTask:
    job: ImageJob
    #: The input image of an img2img job, encoded (PNG); None for text-to-image.
    init_image: bytes | None = None


@dataclass(frozen=True, slots=True)
class WireImage:
    """One encoded image, enough to rebuild the ledger's ``StoredImage``."""

    mime: str
    sha256: str
    width: int
    height: int
    data: bytes

    @classmethod
    def from_stored(cls, image: StoredImage) -> WireImage:
        assert image.data is not None  # EncodeSettings.encode always fills it
        return cls(image.mime, image.sha256, image.width, image.height, image.data)

    def stored(self) -> StoredImage:
        return StoredImage(
            mime=self.mime,
            sha256=self.sha256,
            width=self.width,
            height=self.height,
            size_bytes=len(self.data),
            data=self.data,
        )


@dataclass(frozen=True, slots=True)
class WireError:
    #: "cancelled", "rejected", "unavailable" or "engine".
    kind: str
    message: str
    #: A rejection's offending tag.
    tag: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    job_id: str
    step: int
    total: int


@dataclass(frozen=True, slots=True)
class Outcome:
    job_id: str
    images: tuple[WireImage, ...] = ()
    error: WireError | None = None


@dataclass(frozen=True, slots=True)
class Done:
    loaded_models: tuple[str, ...]
    #: Pipelines this worker has loaded since it started.
    loads: int


def to_error(exc: BaseException) -> WireError:
    """An exception raised in the worker, in its wire form (anything not ours is an engine
    error, named by its type, so the customer reads a reason and the front goes on)."""
    if isinstance(exc, JobCancelled):
        return WireError("cancelled", str(exc))
    if isinstance(exc, JobRejected):
        return WireError("rejected", exc.reason, exc.tag)
    if isinstance(exc, EngineUnavailable):
        return WireError("unavailable", str(exc))
    if isinstance(exc, NostrImagegenError):
        return WireError("engine", str(exc))
    return WireError("engine", f"internal error in the worker ({type(exc).__name__}: {exc})")


def from_error(error: WireError) -> NostrImagegenError:
    """The exception a ``WireError`` stands for, on the front."""
    if error.kind == "cancelled":
        return JobCancelled(error.message)
    if error.kind == "rejected":
        return JobRejected(error.message, error.tag)
    if error.kind == "unavailable":
        return EngineUnavailable(error.message)
    return EngineError(error.message)
