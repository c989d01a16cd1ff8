"""Projection writes batched: consecutive executions of one statement whose
results nobody reads go to the driver as one ``executemany``.

A projection handler typically runs one upsert per event. Sent one by one,
each costs the driver's per-statement work (on PostgreSQL, a message and a
result even in pipeline mode); a batch of 500 such upserts sent as one
``executemany`` costs a fraction of that, on SQLite too. The order of the
statements is kept: a different statement, a read, or the end of the
handlers' work sends what is pending first.

Whether a result is read is known from the cursor ``execute`` returned: a
cursor still referenced when its statement must go out (a handler kept it,
to read ``rowcount`` or rows) is executed on its own and keeps its result;
one that was dropped (``tx.execute(...)`` as a statement) joins the batch.
An error then surfaces when the batch runs, not in the handler of its event:
the worker treats a batched write like a pipelined one, and on failure runs
the batch again statement by statement to find the event.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from eventfold.subscriptions.projection import Cursor
from eventfold.subscriptions.readmodel import BuildTx, Connection


class _Deferred:
    """The cursor of a statement that may not have run yet."""

    __slots__ = ("__weakref__", "_cursor", "_tx")

    def __init__(self, tx: BatchingTx) -> None:
        self._tx = tx
        self._cursor: Cursor | None = None

    def _result(self) -> Cursor:
        if self._cursor is None:
            self._tx.flush()
        assert self._cursor is not None
        return self._cursor

    @property
    def rowcount(self) -> int:
        return self._result().rowcount

    @property
    def description(self) -> Any:
        return getattr(self._result(), "description", None)

    def fetchone(self) -> Any:
        return self._result().fetchone()

    def fetchall(self) -> list[Any]:
        return self._result().fetchall()


class BatchingTx(BuildTx):
    """A ``BuildTx`` that holds back consecutive executions of one statement
    and sends them together (see the module's docstring). ``flush()`` sends
    what is pending; the worker calls it before moving the checkpoint."""

    def __init__(
        self,
        conn: Connection,
        tables: Mapping[str, str],
        label: str,
        rendered: dict[str, str] | None = None,
    ) -> None:
        super().__init__(conn, tables, label, rendered)
        self._statement: str | None = None
        self._pending: list[tuple[Sequence[Any], weakref.ref[_Deferred]]] = []
        self.sent = 0
        """Driver calls made so far (an ``executemany`` counts once)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        statement = self.sql(sql)
        if statement != self._statement:
            self.flush()
            self._statement = statement
        cursor = _Deferred(self)
        self._pending.append((params, weakref.ref(cursor)))
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.flush()
        self.sent += 1
        super().executemany(sql, rows)

    def flush(self) -> None:
        """Send every pending statement, in order: runs whose cursors were
        dropped as one ``executemany`` each, the others one by one."""
        pending, self._pending = self._pending, []
        statement = self._statement
        if statement is None or not pending:
            return
        run: list[Sequence[Any]] = []
        for params, ref in pending:
            cursor = ref()
            if cursor is None:
                run.append(params)
                continue
            self._send(statement, run)
            run = []
            self.sent += 1
            cursor._cursor = self.conn.raw_execute(statement, params)
        self._send(statement, run)

    def _send(self, statement: str, rows: list[Sequence[Any]]) -> None:
        if not rows:
            return
        self.sent += 1
        if len(rows) == 1:
            self.conn.raw_execute(statement, rows[0])
        else:
            self.conn.raw_executemany(statement, rows)
