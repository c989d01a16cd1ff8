"""Taking bus messages into the mirror (see ``eventfold.messaging.mirror``):
in one transaction per batch, by bus sequence, each event once, parking
what can never be applied.

    eventfold_mirror_event(position, stream_id, category, version, event_id, type,
                           schema_version, data, metadata, recorded_at, source_seq, tags)
    eventfold_mirror_source(name, identity, seq, updated_at)
    eventfold_mirror_pending(name, seq, subject, headers, data, received_at)
    eventfold_parked(name, identity, seq, subject, reason, headers, data, parked_at)
    eventfold_parked_log(name, identity, seq, action, outcome, detail, actor, at)

What an operator does with a parked message (retry, skip) is in
``eventfold.messaging.parking``, logged in ``eventfold_parked_log``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

import msgspec

from eventfold.errors import PoisonMessage
from eventfold.messaging.wire import decode_event
from eventfold.store.api import RecordedEvent
from eventfold.store.checks import category_of
from eventfold.subscriptions.readmodel import Connection

Verdict = Literal["applied", "duplicate", "held", "parked"]
"""What became of a message: ``held`` waits for an earlier one (it is stored:
acknowledge it); ``parked`` can never be applied (terminate it)."""

_SETUP_LOCK = 7_243_019_559
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS eventfold_mirror_event (
        position BIGINT PRIMARY KEY,
        stream_id TEXT NOT NULL,
        category TEXT NOT NULL,
        version BIGINT NOT NULL,
        event_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        data TEXT NOT NULL,
        metadata TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        source_seq BIGINT NOT NULL,
        UNIQUE (stream_id, version)
    )""",
    "CREATE INDEX IF NOT EXISTS eventfold_mirror_event_by_category "
    "ON eventfold_mirror_event (category, position)",
    """CREATE TABLE IF NOT EXISTS eventfold_mirror_source (
        name TEXT PRIMARY KEY,
        identity TEXT NOT NULL,
        seq BIGINT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS eventfold_mirror_pending (
        name TEXT NOT NULL,
        seq BIGINT NOT NULL,
        subject TEXT NOT NULL,
        headers TEXT NOT NULL,
        data TEXT NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (name, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS eventfold_parked (
        name TEXT NOT NULL,
        identity TEXT NOT NULL,
        seq BIGINT NOT NULL,
        subject TEXT NOT NULL,
        reason TEXT NOT NULL,
        headers TEXT NOT NULL,
        data TEXT NOT NULL,
        parked_at TEXT NOT NULL,
        PRIMARY KEY (name, identity, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS eventfold_parked_log (
        name TEXT NOT NULL,
        identity TEXT NOT NULL,
        seq BIGINT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL,
        actor TEXT,
        at TEXT NOT NULL
    )""",
)

_INSERT = (
    "INSERT INTO eventfold_mirror_event (position, stream_id, category, version, event_id, "
    "type, schema_version, data, metadata, recorded_at, source_seq, tags) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Mirrors made before events had tags gain the column (NULL: no tags).
_TAGS_COLUMN = "ALTER TABLE eventfold_mirror_event ADD COLUMN tags TEXT"
_COLUMNS = {
    "sqlite": "SELECT name FROM pragma_table_info('eventfold_mirror_event')",
    "postgresql": (
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'eventfold_mirror_event' AND table_schema = current_schema()"
    ),
}
_SOURCE = "SELECT identity, seq FROM eventfold_mirror_source WHERE name = ?"
_SOURCE_LOCKED = "SELECT identity, seq FROM eventfold_mirror_source WHERE name = ? FOR UPDATE"
_HEAD = "SELECT COALESCE(MAX(position), 0) FROM eventfold_mirror_event"


class Incoming(msgspec.Struct, frozen=True):
    """A message as a consumer received it."""

    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes


class TakenIn(msgspec.Struct, frozen=True):
    """The outcome of ``take_in``: a verdict per sequence, how far the
    mirror's sequence and head now are."""

    verdicts: dict[int, Verdict]
    seq: int
    head: int
    applied: int
    parked: int
    held: int


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _text(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else data


class _Batch:
    def __init__(self, conn: Connection, source: str, identity: str) -> None:
        self.conn = conn
        self.source = source
        self.identity = identity
        self.verdicts: dict[int, Verdict] = {}
        self.applied = self.parked = self.held = 0
        pg = conn.dialect == "postgresql"
        conn.execute(
            "INSERT INTO eventfold_mirror_source (name, identity, seq, updated_at) "
            "VALUES (?, ?, 0, ?) ON CONFLICT (name) DO NOTHING",
            (source, identity, _now()),
        )
        row = conn.execute(_SOURCE_LOCKED if pg else _SOURCE, (source,)).fetchone()
        self.seq = int(row[1])
        if row[0] != identity:
            # A new incarnation of the stream: its sequences start again.
            conn.execute("DELETE FROM eventfold_mirror_pending WHERE name = ?", (source,))
            self.seq = 0
        self.waiting = int(
            conn.execute(
                "SELECT COUNT(*) FROM eventfold_mirror_pending WHERE name = ?", (source,)
            ).fetchone()[0]
        )
        self.head = int(conn.execute(_HEAD).fetchone()[0])

    def take(self, item: Incoming) -> None:
        if item.seq <= self.seq:
            self.verdicts[item.seq] = "duplicate"
        elif item.seq == self.seq + 1:
            self.verdicts[item.seq] = self._release(item)
            self.seq = item.seq
            self._drain()
        else:
            self.conn.execute(
                "INSERT INTO eventfold_mirror_pending (name, seq, subject, headers, data, "
                "received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, seq) DO NOTHING",
                (
                    self.source,
                    item.seq,
                    item.subject,
                    msgspec.json.encode(item.headers).decode(),
                    base64.b64encode(item.data).decode(),
                    _now(),
                ),
            )
            self.waiting += 1
            self.held += 1
            self.verdicts[item.seq] = "held"

    def _drain(self) -> None:
        while self.waiting > 0:
            row = self.conn.execute(
                "SELECT subject, headers, data FROM eventfold_mirror_pending "
                "WHERE name = ? AND seq = ?",
                (self.source, self.seq + 1),
            ).fetchone()
            if row is None:
                return
            item = Incoming(
                self.seq + 1,
                row[0],
                msgspec.json.decode(row[1], type=dict[str, str]),
                base64.b64decode(row[2]),
            )
            self._release(item)
            self.conn.execute(
                "DELETE FROM eventfold_mirror_pending WHERE name = ? AND seq = ?",
                (self.source, item.seq),
            )
            self.waiting -= 1
            self.seq = item.seq

    def _release(self, item: Incoming) -> Verdict:
        try:
            record = decode_event(item.data, item.headers)
        except PoisonMessage as exc:
            return self._park(item, exc.reason)
        found = self.conn.execute(
            "SELECT event_id FROM eventfold_mirror_event WHERE stream_id = ? AND version = ?",
            (record.stream_id, record.version),
        ).fetchone()
        if found is not None:
            if found[0] == str(record.event_id):
                return "duplicate"
            return self._park(
                item,
                f"stream {record.stream_id!r} version {record.version} already holds "
                f"event {found[0]}, not {record.event_id}",
            )
        if record.position <= self.head:
            return self._park(
                item,
                f"out of order: event {record.event_id} at position {record.position} "
                f"arrived after position {self.head}",
            )
        insert_event(self.conn, record, item.seq)
        self.head = record.position
        self.applied += 1
        return "applied"

    def _park(self, item: Incoming, reason: str) -> Verdict:
        self.conn.execute(
            "INSERT INTO eventfold_parked (name, identity, seq, subject, reason, headers, data, "
            "parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (name, identity, seq) DO NOTHING",
            (
                self.source,
                self.identity,
                item.seq,
                item.subject,
                reason,
                msgspec.json.encode(item.headers).decode(),
                base64.b64encode(item.data).decode(),
                _now(),
            ),
        )
        self.parked += 1
        return "parked"

    def finish(self) -> TakenIn:
        self.conn.execute(
            "UPDATE eventfold_mirror_source SET identity = ?, seq = ?, updated_at = ? "
            "WHERE name = ?",
            (self.identity, self.seq, _now(), self.source),
        )
        return TakenIn(self.verdicts, self.seq, self.head, self.applied, self.parked, self.held)


def insert_event(conn: Connection, record: RecordedEvent, source_seq: int) -> None:
    """Put ``record`` in the mirror, taken in from message ``source_seq``."""
    conn.execute(
        _INSERT,
        (
            record.position,
            record.stream_id,
            category_of(record.stream_id),
            record.version,
            str(record.event_id),
            record.type,
            record.schema_version,
            _text(record.data),
            _text(record.metadata),
            record.recorded_at.isoformat(),
            source_seq,
            " ".join(record.tags) if record.tags else None,
        ),
    )


def take_in(source: str, identity: str, items: list[Incoming], conn: Connection) -> TakenIn:
    """Take ``items`` of bus stream ``source`` in (inside the caller's transaction)."""
    batch = _Batch(conn, source, identity)
    for item in sorted(items, key=lambda i: i.seq):
        batch.take(item)
    return batch.finish()


def ensure_schema(conn: Connection) -> None:
    if conn.dialect == "postgresql":
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_SETUP_LOCK,))
    for statement in _SCHEMA:
        conn.execute(statement)
    columns = {row[0] for row in conn.execute(_COLUMNS[conn.dialect]).fetchall()}
    if "tags" not in columns:
        conn.execute(_TAGS_COLUMN)


def mirror_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as plain strings (what ``Incoming`` keeps)."""
    return {str(k): str(v) for k, v in headers.items()}
