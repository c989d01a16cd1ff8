"""What an operator does with a parked message (``eventfold_parked``, see
``eventfold.messaging.intake``): retry it or skip it. Each runs in one
transaction of the read model, serialised with the consumer's intake (on
PostgreSQL by the stream's row in ``eventfold_mirror_source``), and leaves
a line in ``eventfold_parked_log``: what was done, by whom, and how it ended.

**Retry** takes the message in again, with the rules of the code running
now. If it decodes to an event that fits the log (its id, its stream
version and its position all free, its stream's versions in position
order) it is applied at its own position, which may lie behind the
mirror's head (the intake never applies such an event by itself): the
projections that had passed that position must then be rebuilt to include
it (``Retried.behind``; the runtime starts those rebuilds). If the event
is already in the mirror, the message is resolved as a duplicate. Otherwise
it stays parked, with the reason it fails now.

**Skip** drops the message from the parked list: nothing is applied.

The log is ``eventfold_parked_log`` (its schema is with the mirror's, in
``eventfold.messaging.intake``)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Literal

import msgspec

from eventfold.errors import PoisonMessage
from eventfold.messaging.intake import insert_event
from eventfold.messaging.wire import decode_event
from eventfold.store.api import RecordedEvent
from eventfold.subscriptions.readmodel import Connection

Outcome = Literal["applied", "duplicate", "parked", "skipped"]

_LOCK = "SELECT seq FROM eventfold_mirror_source WHERE name = ? FOR UPDATE"
_PARKED = (
    "SELECT subject, headers, data FROM eventfold_parked "
    "WHERE name = ? AND identity = ? AND seq = ?"
)
_FORGET = "DELETE FROM eventfold_parked WHERE name = ? AND identity = ? AND seq = ?"


class Retried(msgspec.Struct, frozen=True):
    """How a retry ended: ``applied`` (at ``position``; ``behind``: behind
    the mirror's head, so projections past it need a rebuild), ``duplicate``
    (the event was in the mirror already), or ``parked`` again (``reason``)."""

    outcome: Outcome
    reason: str = ""
    stream_id: str | None = None
    type: str | None = None
    position: int | None = None
    behind: bool = False


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _log(
    conn: Connection,
    key: tuple[str, str, int],
    action: str,
    outcome: Outcome,
    detail: str,
    actor: str | None,
) -> None:
    conn.execute(
        "INSERT INTO eventfold_parked_log (name, identity, seq, action, outcome, detail, actor, "
        "at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (*key, action, outcome, detail, actor, _now()),
    )


def _lock(conn: Connection, name: str) -> None:
    if conn.dialect == "postgresql":
        conn.execute(_LOCK, (name,))


def _fits(conn: Connection, record: RecordedEvent) -> str | None:
    """Why ``record`` cannot take its place in the mirror (None: it can)."""
    taken = conn.execute(
        "SELECT stream_id, version FROM eventfold_mirror_event WHERE position = ?",
        (record.position,),
    ).fetchone()
    if taken is not None:
        return f"position {record.position} holds {taken[0]!r} version {taken[1]}"
    holder = conn.execute(
        "SELECT event_id FROM eventfold_mirror_event WHERE stream_id = ? AND version = ?",
        (record.stream_id, record.version),
    ).fetchone()
    if holder is not None:
        return (
            f"stream {record.stream_id!r} version {record.version} already holds "
            f"event {holder[0]}, not {record.event_id}"
        )
    before = conn.execute(
        "SELECT MAX(position) FROM eventfold_mirror_event WHERE stream_id = ? AND version < ?",
        (record.stream_id, record.version),
    ).fetchone()[0]
    after = conn.execute(
        "SELECT MIN(position) FROM eventfold_mirror_event WHERE stream_id = ? AND version > ?",
        (record.stream_id, record.version),
    ).fetchone()[0]
    if (before is not None and int(before) > record.position) or (
        after is not None and int(after) < record.position
    ):
        return (
            f"position {record.position} would put {record.stream_id!r} version "
            f"{record.version} out of its stream's order"
        )
    return None


def retry(
    conn: Connection, name: str, identity: str, seq: int, actor: str | None
) -> Retried | None:
    """Retry parked message ``seq`` of bus stream ``name`` (incarnation
    ``identity``); None if no such message is parked."""
    _lock(conn, name)
    key = (name, identity, seq)
    row = conn.execute(_PARKED, key).fetchone()
    if row is None:
        return None
    headers = msgspec.json.decode(row[1], type=dict[str, str])
    try:
        record = decode_event(base64.b64decode(row[2]), headers)
    except PoisonMessage as exc:
        return _still(conn, key, exc.reason, actor)
    same = conn.execute(
        "SELECT stream_id, version FROM eventfold_mirror_event WHERE event_id = ?",
        (str(record.event_id),),
    ).fetchone()
    if same is not None:
        if (same[0], int(same[1])) == (record.stream_id, record.version):
            conn.execute(_FORGET, key)
            _log(conn, key, "retry", "duplicate", "the event is in the mirror already", actor)
            return Retried("duplicate", stream_id=record.stream_id, type=record.type)
        return _still(
            conn,
            key,
            f"event {record.event_id} is in the mirror as {same[0]!r} version {same[1]}",
            actor,
        )
    reason = _fits(conn, record)
    if reason is not None:
        return _still(conn, key, reason, actor)
    head = int(
        conn.execute("SELECT COALESCE(MAX(position), 0) FROM eventfold_mirror_event").fetchone()[0]
    )
    insert_event(conn, record, seq)
    conn.execute(_FORGET, key)
    behind = record.position < head
    detail = f"applied at position {record.position}" + (" (behind the head)" if behind else "")
    _log(conn, key, "retry", "applied", detail, actor)
    return Retried(
        "applied",
        stream_id=record.stream_id,
        type=record.type,
        position=record.position,
        behind=behind,
    )


def skip(conn: Connection, name: str, identity: str, seq: int, actor: str | None) -> bool:
    """Drop parked message ``seq`` from the parked list; whether it was there."""
    _lock(conn, name)
    key = (name, identity, seq)
    row = conn.execute(
        "SELECT reason FROM eventfold_parked WHERE name = ? AND identity = ? AND seq = ?", key
    ).fetchone()
    if row is None:
        return False
    conn.execute(_FORGET, key)
    _log(conn, key, "skip", "skipped", row[0], actor)
    return True


def _still(conn: Connection, key: tuple[str, str, int], reason: str, actor: str | None) -> Retried:
    conn.execute(
        "UPDATE eventfold_parked SET reason = ? WHERE name = ? AND identity = ? AND seq = ?",
        (reason, *key),
    )
    _log(conn, key, "retry", "parked", reason, actor)
    return Retried("parked", reason=reason)
