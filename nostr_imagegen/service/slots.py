"""Where the scheduler sends jobs: an engine slot runs a batch of jobs and gives back each
job's encoded images.

One slot per engine the front drives: a local ``Engine`` on a GPU of this machine
(``LocalSlot``, its calls in a thread of their own), or an ``Engine`` in a Ray actor on a
machine of the cluster (``service.ray``). The front keeps what must stay single (relays,
ledger, payment, exactly-once answers); a slot only turns jobs into images::

    outcomes = await slot.run([EngineTask(active, init_image=None, progress=on_step)])
    outcomes[0]  # list[StoredImage] (encoded with the front's EncodeSettings), or the error
                 # that ended this job: JobCancelled, JobRejected, EngineError, or
                 # EngineUnavailable (the engine went away: the job may run again elsewhere)

Tasks given together share one pipeline call when the engine can batch them (the scheduler
only groups jobs whose plans have equal ``batch_key``); each keeps its own seed, progress and
cancellation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from nostr_imagegen.errors import NostrImagegenError
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.service.jobqueue import ActiveJob
from nostr_imagegen.service.ledger import StoredImage
from nostr_imagegen.service.seams import GenerationLike

__all__ = ["EncodeSettings", "EngineSlot", "EngineTask", "TaskOutcome"]


@dataclass(frozen=True, slots=True)
class EncodeSettings:
    """How a slot encodes a job's images (``[output]``): the type when the request names
    none, whether to embed the generation's metadata (never for an encrypted job), quality."""

    default_output: str = "png"
    embed_metadata: bool = False
    quality: int = 90

    def encode(self, job: ImageJob, generated: GenerationLike) -> list[StoredImage]:
        """The engine's encode step (``engine.encode.encode_result``) with these settings:
        the request's ``output`` type (else ``default_output``), and the generation's
        metadata when asked (never for an encrypted job). Raises ``JobRejected`` for an
        output type the encoder does not write."""
        from nostr_imagegen.engine.encode import encode_result, normalize_output_type
        from nostr_imagegen.engine_config import OutputConfig

        output = OutputConfig(
            default_format=normalize_output_type(self.default_output).removeprefix("image/"),
            embed_metadata=self.embed_metadata,
            quality=self.quality,
        )
        return [
            StoredImage(
                mime=encoded.mime,
                sha256=encoded.sha256,
                width=encoded.width,
                height=encoded.height,
                size_bytes=len(encoded.data),
                data=encoded.data,
            )
            for encoded in encode_result(job, generated, output)
        ]


@dataclass(eq=False)
class EngineTask:
    """One job handed to a slot."""

    active: ActiveJob
    #: The fetched input image of an img2img job.
    init_image: Image.Image | None = None
    #: ``progress(step, total)``, called from any thread (the slot's, or a stream reader).
    progress: Callable[[int, int], None] | None = None


#: What became of one task: its encoded images, or the error that ended it.
TaskOutcome = list[StoredImage] | NostrImagegenError


class EngineSlot(Protocol):
    """One engine the scheduler can send jobs to (see the module doc)."""

    @property
    def name(self) -> str:
        """For logs and metrics: ``engine-0``, ``ray-worker-1``."""
        ...

    @property
    def available(self) -> bool:
        """False while the engine cannot take jobs (a Ray actor restarting)."""
        ...

    def loaded_models(self) -> frozenset[str]:
        """The models loaded on it now, as far as the front knows (affinity routing)."""
        ...

    def max_batch(self, model: str) -> int:
        """Most jobs of ``model`` one ``run`` may take together."""
        ...

    async def run(self, tasks: Sequence[EngineTask]) -> list[TaskOutcome]:
        """Generate and encode every task; one outcome per task, in order. Never raises for
        one job's failure (that is its outcome); ``CancelledError`` passes through."""
        ...

    async def close(self) -> None:
        """Release the engine (threads, actors)."""
        ...
