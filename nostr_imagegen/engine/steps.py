"""Between two denoising steps of one pipeline call: each job's progress and cancellation.

    watch = StepWatch([(progress, cancel), ...], refine_steps=0)  # the call's jobs, in order
    pipeline(..., callback_on_step_end=watch.on_step_end)           # raises Interrupted when
    watch.stopped[i]                                                # no job is left to serve

A call holds one job (``Engine.generate``) or several sharing one batch
(``Engine.generate_batch``). A job whose ``cancel`` is set, or whose progress callback fails,
is stopped on its own: it gets its error as its outcome, is not reported to again, and the
call goes on for the others (its images are still computed, then dropped: taking it out of
the latents mid-loop would change the others' batch and generators). When every job of the
call is stopped, the call leaves the denoising loop at the next step end.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nostr_imagegen.errors import EngineError, JobCancelled, NostrImagegenError

__all__ = ["Interrupted", "Progress", "StepWatch"]

logger = logging.getLogger(__name__)

#: ``progress(step, total)``: called after each denoising step of a job.
Progress = Callable[[int, int], None]


class Interrupted(Exception):
    """Raised inside the step callback to leave the denoising loop at once."""


class StepWatch:
    """The ``callback_on_step_end`` of one call, for its jobs ``(progress, cancel)`` in call
    order. ``refine_steps``: the steps of a refine pass after the generation, counted in the
    same total (the first pass's step count is learnt when it ends)."""

    def __init__(
        self,
        jobs: Sequence[tuple[Progress | None, threading.Event | None]],
        *,
        steps: int,
        refine_steps: int = 0,
    ) -> None:
        self._jobs = list(jobs)
        self._steps = steps
        self._refine_steps = refine_steps
        self._first_pass = 0  # the generation's step count, once it has finished
        #: Per job: why it was stopped before the call ended; None while it is served.
        self.stopped: list[NostrImagegenError | None] = [None] * len(self._jobs)

    def all_stopped(self) -> bool:
        """Check the cancel flags now; True when no job of the call is left to serve."""
        for index, (_, cancel) in enumerate(self._jobs):
            if self.stopped[index] is None and cancel is not None and cancel.is_set():
                self.stopped[index] = JobCancelled("the job was cancelled")
        return all(stopped is not None for stopped in self.stopped)

    def outcomes(self) -> list[NostrImagegenError]:
        """Each job's error, once ``all_stopped()`` said no job is left."""
        stopped = [error for error in self.stopped if error is not None]
        if len(stopped) != len(self.stopped):
            raise RuntimeError("outcomes() of a call that still serves a job")
        return stopped

    def on_step_end(
        self, pipe: Any, step: int, timestep: Any, tensors: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        if self.all_stopped():
            raise Interrupted
        total = int(getattr(pipe, "num_timesteps", self._steps))
        # Steps of the refine pass follow the generation's: one count for the job.
        before = self._first_pass
        done, of = before + step + 1, (before or total) + self._refine_steps
        for index, (progress, _) in enumerate(self._jobs):
            if progress is not None and self.stopped[index] is None:
                self._report(index, progress, done, of)
        if step + 1 == total and not self._first_pass:
            self._first_pass = total
        if self.all_stopped():  # a progress callback failed, the call's last job
            raise Interrupted
        return tensors

    def _report(self, index: int, progress: Progress, done: int, of: int) -> None:
        try:
            progress(done, of)
        except Exception as exc:
            # One job's broken callback must not cost the other jobs of the batch.
            logger.exception("progress callback of job %d of the call failed", index)
            self.stopped[index] = EngineError(
                f"image generation failed (progress callback: {type(exc).__name__}: {exc})"
            )
