"""Stream lifecycle on SQLite: removals run on the writer thread, inside a
group's transaction like any append, so a removal and the appends around it
are strictly ordered (a hard delete racing an append: one of them is first,
and the append after a tombstone fails), and the cut is recorded in the same
transaction as the rows it removes.

``stream_cuts`` keeps every cut; ``log_head`` is the highest position the log
had when the cut was made, so that the next append never takes the position
of an event that was removed from the end of the log (``HEAD_SQL``)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from eventfold.store.chain import GENESIS
from eventfold.store.cuts import Cut, CutReason, cut_time, micros, plan_truncate
from eventfold.store.lazy import time_of
from eventfold.store.sqlite.rows import LAST_SQL, LATEST_CUT_SQL
from eventfold.store.sqlite.writer import Request, _Transaction

_INSERT_CUT = (
    "INSERT INTO stream_cuts (stream_id, before_version, anchor, reason, at, archive, "
    "signature, log_head) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_CUTS = (
    "SELECT stream_id, before_version, anchor, reason, at, archive, signature FROM stream_cuts "
    "WHERE (? IS NULL OR stream_id = ?) ORDER BY stream_id, seq"
)


class CutRequest(Request):
    """A truncation (``before`` given) or a deletion (``before`` None), run
    by the writer in a group's transaction."""

    __slots__ = ("archive", "before", "key", "reason", "stream_id")

    def __init__(
        self,
        future: asyncio.Future[Any],
        stream_id: str,
        before: int | None,
        reason: CutReason,
        archive: str,
        key: bytes | None,
    ) -> None:
        super().__init__(future, 1)
        self.stream_id = stream_id
        self.before = before
        self.reason = reason
        self.archive = archive
        self.key = key

    def apply(self, tx: _Transaction) -> Cut | None:
        con, stream_id = tx.con, self.stream_id
        last = con.execute(LAST_SQL, (stream_id,)).fetchone()
        cut = con.execute(LATEST_CUT_SQL, (stream_id,)).fetchone()
        tombstoned = cut is not None and cut[2] == "tombstoned"
        if last is not None:
            version, head = last[0], bytes(last[2])
        elif cut is not None:
            version, head = cut[0] - 1, bytes(cut[1])
        else:
            version, head = 0, GENESIS
        floor = 1 if cut is None else cut[0]  # the first version that may be stored
        if self.before is not None:
            if not plan_truncate(stream_id, self.before, version, floor, tombstoned):
                return None
            before = self.before
        else:
            if tombstoned or (self.reason == "deleted" and floor > version):
                return None
            before = version + 1
        if before == version + 1:
            anchor = head
        else:
            (anchor,) = con.execute(
                "SELECT hash FROM events WHERE stream_id = ? AND version = ?",
                (stream_id, before - 1),
            ).fetchone()
        tagged = con.execute(
            "SELECT position, tags FROM events "
            "WHERE stream_id = ? AND version < ? AND tags IS NOT NULL",
            (stream_id, before),
        ).fetchall()
        con.executemany(
            "DELETE FROM event_tags WHERE tag = ? AND position = ?",
            [(tag, position) for position, tags in tagged for tag in tags.split(" ")],
        )
        con.execute("DELETE FROM events WHERE stream_id = ? AND version < ?", (stream_id, before))
        made = Cut(stream_id, before, bytes(anchor), self.reason, cut_time(), self.archive)
        made = made.signed(self.key)
        con.execute(
            _INSERT_CUT,
            (
                stream_id,
                before,
                made.anchor,
                made.reason,
                micros(made.at),
                made.archive,
                made.signature,
                tx.head,
            ),
        )
        return made


def list_cuts(con: sqlite3.Connection, stream_id: str | None) -> list[Cut]:
    return [
        Cut(r[0], r[1], bytes(r[2]), r[3], time_of(r[4]), r[5], r[6])
        for r in con.execute(_CUTS, (stream_id, stream_id))
    ]
