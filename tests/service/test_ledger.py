"""The job ledger: duplicate claims, the state machine, restart bookkeeping, kill safety."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nostr_imagegen.errors import LedgerError
from nostr_imagegen.nostr.event import Event, UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.ledger import JobState, Ledger, StoredImage

CUSTOMER = Keys.generate()
PROVIDER = Keys.generate()


def _request(prompt: str = "a purple ostrich") -> Event:
    return sign_event(UnsignedEvent(kind=5100, tags=(("i", prompt, "text"),)), CUSTOMER)


def _answer(request: Event) -> list[Event]:
    result = sign_event(
        UnsignedEvent(kind=6100, tags=(("e", request.id), ("p", request.pubkey)), content="u"),
        PROVIDER,
    )
    success = sign_event(
        UnsignedEvent(kind=7000, tags=(("status", "success"), ("e", request.id))), PROVIDER
    )
    return [result, success]


IMAGE = StoredImage(
    mime="image/png", sha256="ab" * 32, width=64, height=48, size_bytes=3, data=b"png"
)


def test_claim_is_true_once_per_request_id(ledger: Ledger) -> None:
    request = _request()
    assert ledger.claim(request, relay="ws://a") is True
    assert ledger.claim(request, relay="ws://b") is False
    assert ledger.claim(_request("another"), relay="ws://b") is True
    record = ledger.get(request.id)
    assert record is not None
    assert record.state is JobState.RECEIVED
    assert record.relay == "ws://a"
    assert record.request == request


def test_claim_is_atomic_across_threads_and_connections(tmp_path: Path) -> None:
    request = _request()
    path = tmp_path / "shared.sqlite3"
    ledgers = [Ledger(path) for _ in range(4)]
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def claim(ledger: Ledger) -> None:
        barrier.wait()
        results.append(ledger.claim(request))

    threads = [threading.Thread(target=claim, args=(ledgers[i % 4],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in ledgers:
        opened.close()
    assert sorted(results) == [False] * 7 + [True]


def test_full_happy_path_is_recorded_with_timestamps(ledger: Ledger) -> None:
    request = _request()
    ledger.claim(request, now=1.0)
    ledger.transition(request.id, JobState.ACCEPTED, reply_relays=["wss://r"], now=2.0)
    ledger.transition(request.id, JobState.QUEUED, now=3.0)
    ledger.transition(request.id, JobState.PROCESSING, now=4.0)
    ledger.record_generated(request.id, [IMAGE], now=5.0)
    answer = _answer(request)
    ledger.record_uploaded(request.id, ["https://host/x.png"], answer, now=6.0)
    record = ledger.get(request.id)
    assert record is not None
    assert record.state is JobState.UPLOADED
    assert record.answer == tuple(answer)
    assert record.images[0].data is None  # the host has the bytes now
    assert record.images[0].url == "https://host/x.png"
    ledger.mark_answered(request.id, now=7.0)
    ledger.mark_answered(request.id, now=8.0)  # idempotent
    record = ledger.get(request.id)
    assert record is not None
    assert record.state is JobState.PUBLISHED
    assert record.result_event_id == answer[0].id
    assert record.reply_relays == ("wss://r",)
    assert record.attempts == 1
    assert [(state, at) for state, at, _ in ledger.history(request.id)] == [
        (JobState.RECEIVED, 1.0),
        (JobState.ACCEPTED, 2.0),
        (JobState.QUEUED, 3.0),
        (JobState.PROCESSING, 4.0),
        (JobState.GENERATED, 5.0),
        (JobState.UPLOADED, 6.0),
        (JobState.PUBLISHED, 7.0),
    ]


def test_illegal_moves_raise_ledger_error(ledger: Ledger) -> None:
    request = _request()
    ledger.claim(request)
    with pytest.raises(LedgerError, match="cannot move from received to processing"):
        ledger.transition(request.id, JobState.PROCESSING)
    with pytest.raises(LedgerError, match="unknown job"):
        ledger.transition("00" * 32, JobState.ACCEPTED)
    ledger.record_answer(request.id, JobState.REJECTED, [], reason="bad ratio")
    with pytest.raises(LedgerError, match="already rejected"):
        ledger.transition(request.id, JobState.ACCEPTED)
    with pytest.raises(LedgerError, match="record_answer is for"):
        ledger.record_answer(request.id, JobState.PUBLISHED, [])


def test_uploaded_needs_one_url_per_generated_image(ledger: Ledger) -> None:
    request = _request()
    ledger.claim(request)
    ledger.transition(request.id, JobState.ACCEPTED)
    ledger.transition(request.id, JobState.QUEUED)
    ledger.transition(request.id, JobState.PROCESSING)
    ledger.record_generated(request.id, [IMAGE, IMAGE])
    with pytest.raises(LedgerError, match="2 generated image"):
        ledger.record_uploaded(request.id, ["https://one"], _answer(request))
    assert ledger.state(request.id) is JobState.GENERATED


def test_pending_on_startup_sorts_jobs_by_what_a_restart_must_do(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    queued, running, generated, signed, failed, done = (_request(str(i)) for i in range(6))
    with Ledger(path) as ledger:
        for request in (queued, running, generated, signed, failed, done):
            ledger.claim(request)
            ledger.transition(request.id, JobState.ACCEPTED)
        ledger.transition(queued.id, JobState.QUEUED)
        for request in (running, generated, signed, done):
            ledger.transition(request.id, JobState.QUEUED)
            ledger.transition(request.id, JobState.PROCESSING)
        for request in (generated, signed, done):
            ledger.record_generated(request.id, [IMAGE])
        for request in (signed, done):
            ledger.record_uploaded(request.id, ["https://host/x.png"], _answer(request))
        ledger.mark_answered(done.id)
        error = sign_event(UnsignedEvent(kind=7000, tags=(("status", "error"),)), PROVIDER)
        ledger.record_answer(failed.id, JobState.FAILED, [error], reason="boom")
    with Ledger(path) as reopened:
        pending = reopened.pending_on_startup()
        assert {record.request_id for record in pending.resume} == {queued.id, running.id}
        assert [record.request_id for record in pending.upload] == [generated.id]
        assert pending.upload[0].images[0].data == b"png"
        assert {record.request_id for record in pending.publish} == {signed.id, failed.id}
        signed_record = next(r for r in pending.publish if r.request_id == signed.id)
        assert signed_record.answer == tuple(_answer_ids_only(signed_record.answer))
        assert reopened.state(done.id) is JobState.PUBLISHED


def _answer_ids_only(events: tuple[Event, ...]) -> list[Event]:
    # The stored answer re-verifies on read: same ids, same signatures.
    return [Event.model_validate(event.to_dict()) for event in events]


def test_cancelled_without_answer_counts_as_answered(ledger: Ledger) -> None:
    request = _request()
    ledger.claim(request)
    ledger.transition(request.id, JobState.ACCEPTED)
    ledger.transition(request.id, JobState.QUEUED)
    ledger.record_answer(request.id, JobState.CANCELLED, [], reason="cancelled by customer")
    pending = ledger.pending_on_startup()
    assert pending.resume == pending.publish == ()
    assert ledger.counts() == {JobState.CANCELLED: 1}


def test_prune_forgets_only_old_answered_jobs(ledger: Ledger) -> None:
    old, fresh, open_job = _request("old"), _request("fresh"), _request("open")
    for request in (old, fresh, open_job):
        ledger.claim(request, now=100.0)
    ledger.record_answer(old.id, JobState.CANCELLED, [], now=100.0)
    ledger.record_answer(fresh.id, JobState.CANCELLED, [], now=1000.0)
    assert ledger.prune(500.0, now=1000.0) == 1
    assert ledger.get(old.id) is None
    assert ledger.state(fresh.id) is JobState.CANCELLED
    assert ledger.state(open_job.id) is JobState.RECEIVED
    assert ledger.history(old.id) == []


def test_tampered_stored_answer_is_a_ledger_error(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "ledger.sqlite3"
    request = _request()
    with Ledger(path) as ledger:
        ledger.claim(request)
        error = sign_event(UnsignedEvent(kind=7000, tags=(("status", "error"),)), PROVIDER)
        ledger.record_answer(request.id, JobState.FAILED, [error])
    raw = json.loads(json.dumps(error.to_dict()))
    raw["content"] = "changed"
    db = sqlite3.connect(path)
    db.execute("UPDATE jobs SET answer_json = ?", (json.dumps([raw]),))
    db.commit()
    db.close()
    with Ledger(path) as ledger, pytest.raises(LedgerError, match="invalid event"):
        ledger.get(request.id)


def test_closed_ledger_and_bad_file_raise_ledger_error(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.close()
    ledger.close()
    with pytest.raises(LedgerError, match="closed"):
        ledger.claim(_request())
    not_a_db = tmp_path / "garbage.sqlite3"
    not_a_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="cannot open ledger"):
        Ledger(not_a_db)


_KILLED_WRITER = """
import os, sys
from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.service.ledger import JobState, Ledger
ledger = Ledger(sys.argv[1])
keys = Keys.generate()
for i in range(20):
    request = sign_event(UnsignedEvent(kind=5100, tags=(("i", str(i), "text"),)), keys)
    ledger.claim(request)
    ledger.transition(request.id, JobState.ACCEPTED)
print("committed", flush=True)
os.kill(os.getpid(), 9)
"""


def test_commits_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr
    assert "committed" in proc.stdout
    with Ledger(path) as ledger:
        assert ledger.counts() == {JobState.ACCEPTED: 20}
        assert len(ledger.pending_on_startup().resume) == 20
    assert os.path.exists(path)


def test_attempts_count_crashes_not_graceful_interruptions(ledger: Ledger) -> None:
    request = _request()
    ledger.claim(request)
    ledger.transition(request.id, JobState.ACCEPTED)
    ledger.transition(request.id, JobState.QUEUED)
    ledger.transition(request.id, JobState.PROCESSING)
    ledger.transition(request.id, JobState.QUEUED, detail="shutdown", refund_attempt=True)
    record = ledger.get(request.id)
    assert record is not None
    assert record.attempts == 0
    ledger.transition(request.id, JobState.PROCESSING)  # then the process dies here
    ledger.transition(request.id, JobState.QUEUED)  # the restart queues it again
    ledger.transition(request.id, JobState.PROCESSING)
    record = ledger.get(request.id)
    assert record is not None
    assert record.attempts == 2
