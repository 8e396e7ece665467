"""What the status page shows: the jobs in hand and the last ones finished, with nothing an
encrypted job keeps secret.

``JobBoard`` is fed by the runner's hooks (every feedback it publishes, every result) and
read by ``snapshot``. An encrypted job is listed by id and status only: no prompt, no
thumbnail, no feedback note (its notes are encrypted to the customer for a reason).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.imagejob.results import parse_result
from nostr_imagegen.nostr.event import Event
from nostr_imagegen.service.jobqueue import ActiveJob

__all__ = ["JobBoard", "JobLine"]

#: Prompts are cut to this many characters on the page.
_PROMPT_CHARS = 200


@dataclass(slots=True)
class JobLine:
    """One job as the status page shows it."""

    id: str
    status: str
    updated_at: float
    encrypted: bool = False
    prompt: str | None = None
    note: str | None = None
    thumbnail: str | None = None
    amount_msats: int | None = None


def _prompt(job: ImageJob) -> str | None:
    return None if job.encryption is not None else job.prompt[:_PROMPT_CHARS]


class JobBoard:
    """The last ``capacity`` jobs, newest first, and the money they brought."""

    def __init__(self, capacity: int = 50) -> None:
        self._capacity = capacity
        self._lines: OrderedDict[str, JobLine] = OrderedDict()
        self._payment_asked: dict[str, int | None] = {}
        self.earned_msats = 0

    def _line(self, request_id: str, encrypted: bool) -> JobLine:
        line = self._lines.get(request_id)
        if line is None:
            line = self._lines[request_id] = JobLine(request_id, "received", time.time())
            while len(self._lines) > self._capacity:
                old, _ = self._lines.popitem(last=False)
                self._payment_asked.pop(old, None)
        self._lines.move_to_end(request_id)
        line.encrypted = line.encrypted or encrypted
        line.updated_at = time.time()
        return line

    def feedback(self, event: Event) -> tuple[str, str] | None:
        """Record a feedback event; returns ``(request id, status)`` when it has both."""
        status_tag = event.first_tag("status")
        request_id = event.tag_value("e")
        if status_tag is None or len(status_tag) < 2 or request_id is None:
            return None
        encrypted = event.first_tag("encrypted") is not None
        line = self._line(request_id, encrypted)
        line.status = status_tag[1]
        line.note = None if encrypted or len(status_tag) < 3 else status_tag[2][:_PROMPT_CHARS]
        amount = event.first_tag("amount")
        if status_tag[1] == "payment-required" and amount is not None and amount[1].isdigit():
            self._payment_asked[request_id] = int(amount[1])
            line.amount_msats = int(amount[1])
        return request_id, status_tag[1]

    def payment_asked(self, request_id: str) -> bool:
        return request_id in self._payment_asked

    def result(self, job: ImageJob, event: Event) -> int | None:
        """Record a delivered result; returns the msats it earned (asked for and paid), if any."""
        encrypted = job.encryption is not None
        line = self._line(job.id, encrypted)
        line.status = "success"
        line.prompt = _prompt(job)
        if not encrypted:
            urls = parse_result(event).urls
            line.thumbnail = urls[0] if urls else None
        earned = self._payment_asked.pop(job.id, None)
        if earned:
            self.earned_msats += earned
        return earned

    def snapshot(self, active: Sequence[ActiveJob], queued: Sequence[str]) -> dict[str, Any]:
        """The page's data: jobs in hand (with their queue position) and the recent ones."""
        in_hand = []
        for item in active:
            job = item.job
            if job.id in queued:
                state = f"queued #{queued.index(job.id) + 1}"
            elif item.waiter is not None:
                state = "waiting for payment"
            else:
                state = "running"
            in_hand.append(
                {"id": job.id, "state": state, "encrypted": job.encryption is not None,
                 "prompt": _prompt(job)}
            )  # fmt: skip
        recent = [asdict(line) for line in reversed(self._lines.values())]
        for entry in recent:
            if entry["encrypted"]:  # never anything but the id and the status
                entry.update(prompt=None, note=None, thumbnail=None)
        return {"active": in_hand, "recent": recent, "earned_msats": self.earned_msats}
