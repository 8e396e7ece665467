"""The job ledger: a write-ahead record of every job, so a killed DVM answers each job once.

One SQLite file (stdlib ``sqlite3``), one row per request event id, one row per transition::

    received ──> accepted ──> [payment-required] ──> queued ──> processing ──> generated
       │            │                 │                 │            │             │
       │            └─────────────────┴─────────────────┴────────────┴──> uploaded (result
       │                                                                  signed, stored)
       └──> rejected | cancelled | failed | published   (terminal)

Write-ahead rule: the runner records what it is about to do before doing it. The signed
answer (the 6100 result plus its ``success`` feedback, or the ``error`` feedback) is stored
*before* it is published, so a restart republishes the very same events (same ids: relays
and customers see one answer) instead of generating again. ``pending_on_startup()`` lists
what a restart must finish.

Durability: WAL journal with ``synchronous=NORMAL``. Every commit is written to the WAL file
before ``commit()`` returns, so a killed process (SIGKILL, OOM, crash) loses nothing; only an
operating-system crash or power cut can roll back the last few commits (never corrupt the
file). The worst case then is one job answered again, and a stored-but-unacknowledged
answer is republished byte-identical. ``synchronous=FULL`` (``durable=True``) adds an fsync
per commit, which costs milliseconds per transition on ordinary disks: opt in when a power
cut must not repeat a job.

Thread safety: one connection (``check_same_thread=False``) behind a lock; every public
method is one short transaction. Async callers may call it directly (transactions take well
under a millisecond with ``NORMAL``) or through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from nostr_imagegen.errors import LedgerError
from nostr_imagegen.nostr.event import Event, parse_event

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "JobRecord",
    "JobState",
    "Ledger",
    "PaymentRecord",
    "PendingWork",
    "StoredImage",
]

logger = logging.getLogger(__name__)

_SCHEMA_VERSION = 2


class JobState(StrEnum):
    """Where a job stands. Terminal states never change again."""

    RECEIVED = "received"
    ACCEPTED = "accepted"
    PAYMENT_REQUIRED = "payment-required"
    QUEUED = "queued"
    PROCESSING = "processing"
    GENERATED = "generated"
    UPLOADED = "uploaded"
    PUBLISHED = "published"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FAILED = "failed"


#: States from which a restart resumes the job (runs it again from its request).
ACTIVE_STATES = frozenset(
    {
        JobState.RECEIVED,
        JobState.ACCEPTED,
        JobState.PAYMENT_REQUIRED,
        JobState.QUEUED,
        JobState.PROCESSING,
    }
)
TERMINAL_STATES = frozenset(
    {JobState.PUBLISHED, JobState.REJECTED, JobState.CANCELLED, JobState.FAILED}
)

# Allowed moves. A terminal state is reachable from every non-terminal one (any step may
# fail, be cancelled or rejected); QUEUED is reachable from PROCESSING (a graceful shutdown
# puts the running job back) and from the pre-queue states.
_FORWARD: dict[JobState, frozenset[JobState]] = {
    JobState.RECEIVED: frozenset({JobState.ACCEPTED}),
    JobState.ACCEPTED: frozenset({JobState.PAYMENT_REQUIRED, JobState.QUEUED}),
    JobState.PAYMENT_REQUIRED: frozenset({JobState.QUEUED}),
    JobState.QUEUED: frozenset({JobState.PROCESSING}),
    JobState.PROCESSING: frozenset({JobState.GENERATED, JobState.QUEUED}),
    JobState.GENERATED: frozenset({JobState.UPLOADED}),
    JobState.UPLOADED: frozenset({JobState.PUBLISHED}),
}


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One encoded image kept between generation and upload (``data``) and after (``url``)."""

    mime: str
    sha256: str
    width: int
    height: int
    size_bytes: int
    data: bytes | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A ledger row, as read back."""

    request_id: str
    customer: str
    kind: int
    state: JobState
    request_json: str
    relay: str | None
    reply_relays: tuple[str, ...]
    received_at: float
    updated_at: float
    attempts: int
    reason: str | None
    amount_msats: int | None
    result_event_id: str | None
    #: Signed events to publish, in order (result then ``success``; or one ``error``).
    answer: tuple[Event, ...]
    answered_at: float | None
    images: tuple[StoredImage, ...]

    @property
    def request(self) -> Event:
        """The stored request event (verified again: the file is outside our control)."""
        return parse_event(self.request_json)


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """A job's payment, as the ledger keeps it (``Ledger.payment``).

    ``method`` is ``invoice`` (bolt11 from a backend), ``zap``, ``cashu`` or ``free`` (the
    daily allowance). ``proof`` is what settled it (payment hash, zap receipt id, token
    hash): unique across jobs, so one proof never pays two jobs, across restarts too.
    """

    request_id: str
    customer: str
    method: str
    amount_msats: int
    bolt11: str | None
    payment_hash: str | None
    expires_at: float | None
    issued_at: float
    paid_at: float | None
    proof: str | None

    @property
    def paid(self) -> bool:
        return self.paid_at is not None


@dataclass(frozen=True, slots=True)
class PendingWork:
    """What a restart must finish, from ``Ledger.pending_on_startup()``.

    * ``resume``: accepted but not answered: run again from the request (or answer `error`).
    * ``upload``: generated, image bytes stored, not uploaded: upload, do not regenerate.
    * ``publish``: a signed answer is stored but not acknowledged: publish it as it is.
    """

    resume: tuple[JobRecord, ...]
    upload: tuple[JobRecord, ...]
    publish: tuple[JobRecord, ...]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    request_id      TEXT PRIMARY KEY,
    customer        TEXT NOT NULL,
    kind            INTEGER NOT NULL,
    state           TEXT NOT NULL,
    request_json    TEXT NOT NULL,
    relay           TEXT,
    reply_relays    TEXT NOT NULL DEFAULT '[]',
    received_at     REAL NOT NULL,
    updated_at      REAL NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    reason          TEXT,
    amount_msats    INTEGER,
    result_event_id TEXT,
    answer_json     TEXT,
    answered_at     REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_outbox ON jobs (received_at)
    WHERE answer_json IS NOT NULL AND answered_at IS NULL;
CREATE TABLE IF NOT EXISTS transitions (
    request_id TEXT NOT NULL,
    state      TEXT NOT NULL,
    at         REAL NOT NULL,
    detail     TEXT
);
CREATE INDEX IF NOT EXISTS transitions_job ON transitions (request_id);
CREATE TABLE IF NOT EXISTS payments (
    request_id   TEXT PRIMARY KEY,
    customer     TEXT NOT NULL,
    method       TEXT NOT NULL,
    amount_msats INTEGER NOT NULL,
    bolt11       TEXT,
    payment_hash TEXT,
    expires_at   REAL,
    issued_at    REAL NOT NULL,
    paid_at      REAL,
    proof        TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS payments_customer ON payments (customer, issued_at);
CREATE TABLE IF NOT EXISTS images (
    request_id TEXT NOT NULL,
    position   INTEGER NOT NULL,
    mime       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    data       BLOB,
    url        TEXT,
    PRIMARY KEY (request_id, position)
);
"""


class Ledger:
    """A SQLite job ledger. ``Ledger(path)`` opens (creating) the file; ``":memory:"`` for tests.

    Use as a context manager or call ``close()``. Every method raises ``LedgerError`` when the
    database cannot be read or written, or when a transition is not allowed.
    """

    def __init__(self, path: str | Path, *, durable: bool = False) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._closed = False
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so each method is
            # exactly one transaction and a second process writing the file waits its turn.
            self._db = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(_SCHEMA_VERSION),)
                )
            elif row[0] == "1":
                # Version 1 had no payments table; the script above just created it.
                self._db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema'", (str(_SCHEMA_VERSION),)
                )
            elif row[0] != str(_SCHEMA_VERSION):
                raise LedgerError(
                    f"ledger {self.path} has schema version {row[0]}, "
                    f"this version of nostr_imagegen reads {_SCHEMA_VERSION}"
                )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise LedgerError("the ledger is closed")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the database (checkpointing the WAL). Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.close()
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot close ledger {self.path}: {exc}") from exc

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({self.path!r})"

    # -- writing --------------------------------------------------------------------------

    def claim(self, request: Event, *, relay: str | None = None, now: float | None = None) -> bool:
        """Record a newly seen request atomically. ``False`` when its id is already known.

        The same request arrives from several relays and again after a restart (look-back
        window); only the first ``claim`` returns ``True``, whatever thread or process asks.
        """
        at = time.time() if now is None else now
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO jobs (request_id, customer, kind, state, request_json,"
                " relay, received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.id,
                    request.pubkey,
                    request.kind,
                    JobState.RECEIVED.value,
                    request.to_json(),
                    relay,
                    at,
                    at,
                ),
            )
            if cursor.rowcount == 0:
                return False
            self._log(db, request.id, JobState.RECEIVED, at, relay)
            return True

    def transition(
        self,
        request_id: str,
        state: JobState,
        *,
        detail: str | None = None,
        reply_relays: Sequence[str] | None = None,
        amount_msats: int | None = None,
        refund_attempt: bool = False,
        now: float | None = None,
    ) -> JobState:
        """Move a job to ``state`` (timestamped, optional ``detail``); returns the old state.

        Entering ``processing`` counts an attempt (``max_attempts`` stops crash loops);
        ``refund_attempt`` on the way back from ``processing`` (a graceful shutdown put the
        job back) takes it back. Raises ``LedgerError`` for an unknown job, a job already in
        a terminal state, or a move the state machine does not allow. Terminal states with
        an answer go through ``record_answer`` instead.
        """
        at = time.time() if now is None else now
        with self._transaction() as db:
            old = self._state(db, request_id)
            _check_move(request_id, old, state)
            sets = ["state = ?", "updated_at = ?"]
            values: list[Any] = [state.value, at]
            if state is JobState.PROCESSING:
                sets.append("attempts = attempts + 1")
            elif refund_attempt and old is JobState.PROCESSING:
                # Put back by a graceful shutdown: that attempt was not the job's fault.
                sets.append("attempts = MAX(attempts - 1, 0)")
            if reply_relays is not None:
                sets.append("reply_relays = ?")
                values.append(json.dumps(list(reply_relays)))
            if amount_msats is not None:
                sets.append("amount_msats = ?")
                values.append(amount_msats)
            if detail is not None and state in TERMINAL_STATES:
                sets.append("reason = ?")
                values.append(detail)
            db.execute(
                f"UPDATE jobs SET {', '.join(sets)} WHERE request_id = ?",  # noqa: S608
                (*values, request_id),
            )
            self._log(db, request_id, state, at, detail)
            return old

    def record_generated(
        self, request_id: str, images: Sequence[StoredImage], *, now: float | None = None
    ) -> None:
        """``processing -> generated``: keep the encoded bytes until they are uploaded."""
        at = time.time() if now is None else now
        with self._transaction() as db:
            _check_move(request_id, self._state(db, request_id), JobState.GENERATED)
            db.execute("DELETE FROM images WHERE request_id = ?", (request_id,))
            db.executemany(
                "INSERT INTO images (request_id, position, mime, sha256, width, height,"
                " size_bytes, data, url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        request_id,
                        position,
                        image.mime,
                        image.sha256,
                        image.width,
                        image.height,
                        image.size_bytes,
                        image.data,
                        image.url,
                    )
                    for position, image in enumerate(images)
                ],
            )
            db.execute(
                "UPDATE jobs SET state = ?, updated_at = ? WHERE request_id = ?",
                (JobState.GENERATED.value, at, request_id),
            )
            self._log(db, request_id, JobState.GENERATED, at, f"{len(images)} image(s)")

    def record_uploaded(
        self,
        request_id: str,
        urls: Sequence[str],
        answer: Sequence[Event],
        *,
        now: float | None = None,
    ) -> None:
        """``generated -> uploaded``: the image URLs and the signed answer, before publishing.

        ``answer[0]`` is the result event; the stored bytes are dropped (the hosts have them).
        """
        if not answer:
            raise LedgerError("record_uploaded needs the signed result event")
        at = time.time() if now is None else now
        with self._transaction() as db:
            _check_move(request_id, self._state(db, request_id), JobState.UPLOADED)
            count = db.execute(
                "SELECT COUNT(*) FROM images WHERE request_id = ?", (request_id,)
            ).fetchone()[0]
            if count != len(urls):
                raise LedgerError(
                    f"job {request_id} has {count} generated image(s) but {len(urls)} URL(s)"
                )
            db.executemany(
                "UPDATE images SET url = ?, data = NULL WHERE request_id = ? AND position = ?",
                [(url, request_id, position) for position, url in enumerate(urls)],
            )
            db.execute(
                "UPDATE jobs SET state = ?, updated_at = ?, result_event_id = ?, answer_json = ?"
                " WHERE request_id = ?",
                (JobState.UPLOADED.value, at, answer[0].id, _answer_json(answer), request_id),
            )
            self._log(db, request_id, JobState.UPLOADED, at, answer[0].id)

    def record_answer(
        self,
        request_id: str,
        state: JobState,
        answer: Sequence[Event],
        *,
        reason: str | None = None,
        now: float | None = None,
    ) -> JobState:
        """Move to a terminal ``rejected``/``failed``/``cancelled`` with its signed answer (an
        ``error`` feedback; may be empty), before publishing it. Returns the old state."""
        if state not in (JobState.REJECTED, JobState.FAILED, JobState.CANCELLED):
            raise LedgerError(f"record_answer is for rejected, failed or cancelled, not {state}")
        at = time.time() if now is None else now
        with self._transaction() as db:
            old = self._state(db, request_id)
            _check_move(request_id, old, state)
            db.execute(
                "UPDATE jobs SET state = ?, updated_at = ?, reason = ?, answer_json = ?,"
                " answered_at = ? WHERE request_id = ?",
                (
                    state.value,
                    at,
                    reason,
                    _answer_json(answer) if answer else None,
                    None if answer else at,
                    request_id,
                ),
            )
            db.execute("DELETE FROM images WHERE request_id = ? AND url IS NULL", (request_id,))
            self._log(db, request_id, state, at, reason)
            return old

    def mark_answered(self, request_id: str, *, now: float | None = None) -> None:
        """The stored answer was accepted by a relay: ``uploaded -> published`` for results.

        Idempotent: marking an answered job again changes nothing.
        """
        at = time.time() if now is None else now
        with self._transaction() as db:
            row = db.execute(
                "SELECT state, answer_json, answered_at FROM jobs WHERE request_id = ?",
                (request_id,),
            ).fetchone()
            if row is None:
                raise LedgerError(f"unknown job {request_id}")
            state, answer_json, answered_at = JobState(row[0]), row[1], row[2]
            if answered_at is not None:
                return
            if answer_json is None:
                raise LedgerError(f"job {request_id} has no stored answer to mark published")
            new_state = JobState.PUBLISHED if state is JobState.UPLOADED else state
            db.execute(
                "UPDATE jobs SET state = ?, updated_at = ?, answered_at = ? WHERE request_id = ?",
                (new_state.value, at, at, request_id),
            )
            self._log(db, request_id, new_state, at, "answer published")

    def record_invoice(
        self,
        request_id: str,
        *,
        kind: str,
        amount_msats: int,
        bolt11: str | None = None,
        payment_hash: str | None = None,
        expires_at: float | None = None,
        now: float | None = None,
    ) -> PaymentRecord:
        """Record the invoice (or zap/Cashu request) issued for a job, once.

        Returns the stored payment: the new one, or the one already recorded for this job
        (the caller then uses that invoice: a job is never invoiced twice). The flow asks
        ``payment()`` before creating an invoice; this guard holds even if two ask at once.
        """
        at = time.time() if now is None else now
        with self._transaction() as db:
            row = db.execute("SELECT customer FROM jobs WHERE request_id = ?", (request_id,))
            job = row.fetchone()
            if job is None:
                raise LedgerError(f"unknown job {request_id}")
            db.execute(
                "INSERT OR IGNORE INTO payments (request_id, customer, method, amount_msats,"
                " bolt11, payment_hash, expires_at, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (request_id, job[0], kind, amount_msats, bolt11, payment_hash, expires_at, at),
            )
            record = self._payment(db, request_id)
            assert record is not None
            return record

    def record_paid(
        self,
        request_id: str,
        *,
        proof: str,
        kind: str | None = None,
        amount_msats: int | None = None,
        now: float | None = None,
    ) -> bool:
        """Mark a job's payment settled by ``proof``. ``False`` when ``proof`` already paid
        another job (a replayed zap receipt or token), ``True`` otherwise; marking the same
        job with the same proof again is a no-op that returns ``True``."""
        at = time.time() if now is None else now
        with self._transaction() as db:
            used = db.execute(
                "SELECT request_id FROM payments WHERE proof = ?", (proof,)
            ).fetchone()
            if used is not None:
                return bool(used[0] == request_id)
            current = self._payment(db, request_id)
            if current is None:
                customer = db.execute(
                    "SELECT customer FROM jobs WHERE request_id = ?", (request_id,)
                ).fetchone()
                if customer is None:
                    raise LedgerError(f"unknown job {request_id}")
                db.execute(
                    "INSERT INTO payments (request_id, customer, method, amount_msats,"
                    " issued_at, paid_at, proof) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        request_id,
                        customer[0],
                        kind or "invoice",
                        amount_msats or 0,
                        at,
                        at,
                        proof,
                    ),
                )
            else:
                if current.paid:
                    return True  # paid already (another proof): never charged twice
                db.execute(
                    "UPDATE payments SET paid_at = ?, proof = ?, method = ?,"
                    " amount_msats = ? WHERE request_id = ?",
                    (
                        at,
                        proof,
                        kind or current.method,
                        current.amount_msats if amount_msats is None else amount_msats,
                        request_id,
                    ),
                )
            self._log(db, request_id, JobState.PAYMENT_REQUIRED, at, f"paid ({kind or 'invoice'})")
            return True

    def payment(self, request_id: str) -> PaymentRecord | None:
        """The job's payment row, or ``None`` when no invoice was issued for it."""
        with self._transaction() as db:
            return self._payment(db, request_id)

    def proof_used(self, proof: str) -> bool:
        """Whether ``proof`` (a zap receipt id, a token hash) already paid a job."""
        with self._transaction() as db:
            return (
                db.execute("SELECT 1 FROM payments WHERE proof = ?", (proof,)).fetchone()
                is not None
            )

    def free_jobs_since(self, customer: str, since: float) -> int:
        """How many jobs of ``customer`` the free allowance paid since ``since``."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM payments WHERE customer = ? AND method = 'free'"
                " AND issued_at >= ?",
                (customer, since),
            ).fetchone()
            return int(row[0])

    def prune(self, older_than_s: float, *, now: float | None = None) -> int:
        """Forget finished jobs last updated more than ``older_than_s`` ago; returns how many.

        Keep it longer than the relays' look-back window, or a pruned request that a relay
        sends again would be served again.
        """
        cutoff = (time.time() if now is None else now) - older_than_s
        terminal = tuple(state.value for state in TERMINAL_STATES)
        marks = ",".join("?" * len(terminal))
        with self._transaction() as db:
            ids = [
                row[0]
                for row in db.execute(
                    f"SELECT request_id FROM jobs WHERE updated_at < ? AND state IN ({marks})"  # noqa: S608
                    " AND answered_at IS NOT NULL",
                    (cutoff, *terminal),
                )
            ]
            for table in ("transitions", "images", "payments", "jobs"):
                db.executemany(
                    f"DELETE FROM {table} WHERE request_id = ?",  # noqa: S608
                    [(request_id,) for request_id in ids],
                )
            return len(ids)

    # -- reading --------------------------------------------------------------------------

    def get(self, request_id: str) -> JobRecord | None:
        """The job's row, or ``None`` when the ledger never saw it."""
        with self._transaction() as db:
            row = db.execute(_SELECT + " WHERE request_id = ?", (request_id,)).fetchone()
            return None if row is None else self._record(db, row)

    def state(self, request_id: str) -> JobState | None:
        """The job's current state, or ``None`` when unknown."""
        record = self.get(request_id)
        return None if record is None else record.state

    def history(self, request_id: str) -> list[tuple[JobState, float, str | None]]:
        """Every transition of a job, oldest first: ``(state, unix time, detail)``."""
        with self._transaction() as db:
            return [
                (JobState(state), at, detail)
                for state, at, detail in db.execute(
                    "SELECT state, at, detail FROM transitions WHERE request_id = ? ORDER BY rowid",
                    (request_id,),
                )
            ]

    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state."""
        with self._transaction() as db:
            return {
                JobState(state): count
                for state, count in db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")
            }

    def pending_on_startup(self) -> PendingWork:
        """Jobs a restarted runner must finish, oldest first (see ``PendingWork``)."""
        active = tuple(state.value for state in ACTIVE_STATES)
        marks = ",".join("?" * len(active))
        with self._transaction() as db:
            resume = [
                self._record(db, row)
                for row in db.execute(
                    _SELECT + f" WHERE state IN ({marks}) ORDER BY received_at", active
                )
            ]
            upload = [
                self._record(db, row)
                for row in db.execute(
                    _SELECT + " WHERE state = ? ORDER BY received_at", (JobState.GENERATED.value,)
                )
            ]
            publish = [
                self._record(db, row)
                for row in db.execute(
                    _SELECT + " WHERE answer_json IS NOT NULL AND answered_at IS NULL"
                    " ORDER BY received_at"
                )
            ]
        return PendingWork(tuple(resume), tuple(upload), tuple(publish))

    def unanswered(self) -> list[JobRecord]:
        """Jobs whose signed answer is stored but no relay acknowledged yet (the outbox)."""
        with self._transaction() as db:
            return [
                self._record(db, row)
                for row in db.execute(
                    _SELECT + " WHERE answer_json IS NOT NULL AND answered_at IS NULL"
                    " ORDER BY received_at"
                )
            ]

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _state(db: sqlite3.Connection, request_id: str) -> JobState:
        row = db.execute("SELECT state FROM jobs WHERE request_id = ?", (request_id,)).fetchone()
        if row is None:
            raise LedgerError(f"unknown job {request_id}")
        return JobState(row[0])

    @staticmethod
    def _payment(db: sqlite3.Connection, request_id: str) -> PaymentRecord | None:
        row = db.execute(
            "SELECT request_id, customer, method, amount_msats, bolt11, payment_hash,"
            " expires_at, issued_at, paid_at, proof FROM payments WHERE request_id = ?",
            (request_id,),
        ).fetchone()
        return None if row is None else PaymentRecord(*row)

    @staticmethod
    def _log(
        db: sqlite3.Connection, request_id: str, state: JobState, at: float, detail: str | None
    ) -> None:
        db.execute(
            "INSERT INTO transitions (request_id, state, at, detail) VALUES (?, ?, ?, ?)",
            (request_id, state.value, at, detail[:1000] if detail is not None else None),
        )

    def _record(self, db: sqlite3.Connection, row: tuple[Any, ...]) -> JobRecord:
        images = tuple(
            StoredImage(
                mime=mime,
                sha256=sha256,
                width=width,
                height=height,
                size_bytes=size_bytes,
                data=bytes(data) if data is not None else None,
                url=url,
            )
            for mime, sha256, width, height, size_bytes, data, url in db.execute(
                "SELECT mime, sha256, width, height, size_bytes, data, url FROM images"
                " WHERE request_id = ? ORDER BY position",
                (row[0],),
            )
        )
        try:
            reply_relays = tuple(str(url) for url in json.loads(row[6]))
            answer = (
                tuple(parse_event(item) for item in json.loads(row[13]))
                if row[13] is not None
                else ()
            )
        except (ValueError, TypeError) as exc:
            raise LedgerError(f"ledger row for {row[0]} is corrupt: {exc}") from exc
        except Exception as exc:  # EventError from a tampered file
            raise LedgerError(f"ledger row for {row[0]} holds an invalid event: {exc}") from exc
        return JobRecord(
            request_id=row[0],
            customer=row[1],
            kind=row[2],
            state=JobState(row[3]),
            request_json=row[4],
            relay=row[5],
            reply_relays=reply_relays,
            received_at=row[7],
            updated_at=row[8],
            attempts=row[9],
            reason=row[10],
            amount_msats=row[11],
            result_event_id=row[12],
            answer=answer,
            answered_at=row[14],
            images=images,
        )


_SELECT = (
    "SELECT request_id, customer, kind, state, request_json, relay, reply_relays, received_at,"
    " updated_at, attempts, reason, amount_msats, result_event_id, answer_json, answered_at"
    " FROM jobs"
)


def _answer_json(answer: Sequence[Event]) -> str:
    return json.dumps([event.to_dict() for event in answer], separators=(",", ":"))


def _check_move(request_id: str, old: JobState, new: JobState) -> None:
    if old in TERMINAL_STATES:
        raise LedgerError(f"job {request_id} is already {old.value}; cannot move to {new.value}")
    if new in (JobState.REJECTED, JobState.FAILED, JobState.CANCELLED):
        return
    if new is not old and new not in _FORWARD.get(old, frozenset()):
        raise LedgerError(f"job {request_id} cannot move from {old.value} to {new.value}")
