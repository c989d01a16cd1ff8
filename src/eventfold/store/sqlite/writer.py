"""Group commit: one thread owns the write connection and commits every pending
request together.

Callers on the event loop queue requests. The writer takes everything waiting
(up to a bound): all that arrived while it was committing the previous group,
or while the event loop was busy submitting them. It runs them in ONE
transaction, COMMITs once, and only then settles each caller's future.
Requests run in arrival order and each sees the writes of those before it,
exactly as if they ran one by one. A request that fails its checks is rolled
back alone and gets its typed error; the others commit. If the COMMIT fails,
every request of the group fails with a StoreError and nothing is written.

Savepoints are taken only when needed: a group first runs under one savepoint
for all its requests. Only if one of them fails, or must undo what it wrote,
is that pass rolled back and the group run again with a SAVEPOINT per request.
(A group of one request needs no savepoint: its transaction is one.)
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from eventfold.errors import ConditionFailed, StoreClosed, StoreError, WrongExpectedVersion
from eventfold.store.api import ANY, NO_STREAM_ID, AppendResult, NewEvent, Snapshot, StreamAppend
from eventfold.store.chain import GENESIS, chain
from eventfold.store.checks import category_of, check_expected, replayed_result
from eventfold.store.dcb import AppendCondition, replayed_position
from eventfold.store.sqlite.dcb import first_match
from eventfold.store.sqlite.rows import (
    CUT_HEAD_SQL,
    HEAD_SQL,
    LAST_SQL,
    after_cut,
    join_tags,
    stored_events,
)
from eventfold.store.sqlite.schema import store_error

_LAST_EVENT_SQL = "SELECT position, recorded_at FROM events ORDER BY position DESC LIMIT 1"
MAX_GROUP_REQUESTS = 1000
MAX_GROUP_EVENTS = 20_000
_SKIP_SHARED_GROUPS = 8
"""After a shared pass fails, this many groups go request by request at once,
so that a run of conflicting writers does not pay for two passes per group."""

_INSERT = (
    "INSERT INTO events (position, stream_id, version, category, type, event_id, "
    "schema_version, recorded_at, hash, metadata, data, tags) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TEXT), CAST(? AS TEXT), ?)"
)
_INSERT_TAG = "INSERT INTO event_tags (tag, position, type) VALUES (?, ?, ?)"
_UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots (stream_id, name, version, schema_version, state) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream_id, name) DO UPDATE SET "
    "version = excluded.version, schema_version = excluded.schema_version, "
    "state = excluded.state"
)
PRAGMAS = frozenset(
    {
        "journal_mode",
        "synchronous",
        "busy_timeout",
        "page_size",
        "cache_size",
        "wal_autocheckpoint",
        "query_only",
        "foreign_keys",
    }
)


class _Transaction:
    """What the requests of one group share. A request that is a group of its
    own needs no savepoint: the transaction is one. In the first, ``shared``
    pass over a group no request has a savepoint of its own: undoing one
    abandons the pass (``_Redo``) and the group runs again request by request."""

    __slots__ = ("alone", "con", "head", "now", "shared")

    def __init__(self, con: sqlite3.Connection, head: int, now: int, alone: bool) -> None:
        self.con = con
        self.head = head  # highest position written so far, this group included
        self.now = now  # recorded_at of the group: UTC microseconds since the epoch
        self.alone = alone
        self.shared = False

    def undo(self) -> None:
        """Take back what the current request wrote; the transaction goes on."""
        if self.shared:
            raise _Redo
        if self.alone:
            self.con.execute("ROLLBACK")
            self.con.execute("BEGIN IMMEDIATE")
            self.head = self.con.execute(HEAD_SQL).fetchone()[0]
        else:
            self.con.execute("ROLLBACK TO eventfold_request")


class _Retry(Exception):
    """The optimistic path met something only the checked path can explain."""


class _Redo(Exception):
    """A request of a shared pass needs its own savepoint: run the group again,
    request by request."""


class Request:
    """One caller's unit of work; ``apply`` runs on the writer thread."""

    __slots__ = ("future", "size")

    def __init__(self, future: asyncio.Future[Any], size: int) -> None:
        self.future = future
        self.size = size

    def apply(self, tx: _Transaction) -> Any:
        raise NotImplementedError


class AppendRequest(Request):
    __slots__ = ("appends",)

    def __init__(self, future: asyncio.Future[Any], appends: list[StreamAppend]) -> None:
        size = len(appends[0].events) if len(appends) == 1 else sum(len(a.events) for a in appends)
        super().__init__(future, size)
        self.appends = appends

    def apply(self, tx: _Transaction) -> list[AppendResult]:
        # Optimistic: no id lookups, just the version checks and the insert. A
        # version mismatch or a stored id (unique violation) may still be a
        # replay, so then the checked path (the reference rules) decides.
        try:
            return _insert(tx, _plan(tx, self.appends, lookup=False))
        except (_Retry, sqlite3.IntegrityError):
            tx.undo()
        return _insert(tx, _plan(tx, self.appends, lookup=True))


class EventsRequest(Request):
    """A DCB append: events without a stream, if the condition holds. The
    check runs inside the group's transaction, so it sees every append
    before it in the same group, as if each committed alone."""

    __slots__ = ("condition", "events")

    def __init__(
        self,
        future: asyncio.Future[Any],
        events: list[NewEvent],
        condition: AppendCondition | None,
    ) -> None:
        super().__init__(future, len(events))
        self.events = events
        self.condition = condition

    def apply(self, tx: _Transaction) -> int:
        con = tx.con
        stored = stored_events(con, [event.event_id for event in self.events])
        replay = replayed_position(self.events, stored)
        if replay is not None:
            return replay
        condition = self.condition
        if condition is not None:
            conflict = first_match(con, condition.query, condition.after)
            if conflict is not None:
                raise ConditionFailed(condition.query, condition.after, conflict)
        rows: list[tuple[Any, ...]] = []
        tags: list[tuple[str, int, str]] = []
        head, now = tx.head, tx.now
        for event in self.events:
            head += 1
            (digest,) = chain(GENESIS, NO_STREAM_ID, head, [event])
            rows.append(
                (
                    head,
                    NO_STREAM_ID,
                    head,
                    NO_STREAM_ID,
                    event.type,
                    event.event_id.bytes,
                    event.schema_version,
                    now,
                    digest,
                    event.metadata,
                    event.data,
                    join_tags(event.tags),
                )
            )
            tags += [(tag, head, event.type) for tag in event.tags]
        con.executemany(_INSERT, rows)
        if tags:
            con.executemany(_INSERT_TAG, tags)
        tx.head = head
        return head


class SnapshotRequest(Request):
    __slots__ = ("snapshot",)

    def __init__(self, future: asyncio.Future[Any], snapshot: Snapshot) -> None:
        super().__init__(future, 1)
        self.snapshot = snapshot

    def apply(self, tx: _Transaction) -> None:
        s = self.snapshot
        tx.con.execute(
            _UPSERT_SNAPSHOT, (s.stream_id, s.name, s.version, s.schema_version, s.state)
        )


class PragmaRequest(Request):
    """Reads a setting of the write connection (for diagnostics and tests)."""

    __slots__ = ("name",)

    def __init__(self, future: asyncio.Future[Any], name: str) -> None:
        super().__init__(future, 0)
        self.name = name

    def apply(self, tx: _Transaction) -> object:
        if self.name not in PRAGMAS:  # an allow-list: the name becomes SQL text
            raise ValueError(self.name)
        row = tx.con.execute(f"PRAGMA {self.name}").fetchone()
        return None if row is None else row[0]


_Plan = tuple[StreamAppend, AppendResult | None, int, int, bytes]


def _plan(tx: _Transaction, appends: Sequence[StreamAppend], *, lookup: bool) -> list[_Plan]:
    """Check every stream of one request before anything is written:
    (append, replayed result or None, current version, last position, last hash)."""
    con = tx.con
    plans: list[_Plan] = []
    for item in appends:
        replay = None
        if lookup:
            stored = stored_events(con, [event.event_id for event in item.events])
            replay = replayed_result(item, stored)
        row = con.execute(LAST_SQL, (item.stream_id,)).fetchone()
        if row is None:  # new, or every event removed (StreamDeleted if for good)
            (actual, chained), last = after_cut(con, item.stream_id), 0
        else:
            actual, last, chained = row
        if replay is None and item.expected_version is not ANY:
            try:
                check_expected(item.stream_id, item.expected_version, actual)
            except WrongExpectedVersion:
                if not lookup:
                    raise _Retry from None
                raise
        plans.append((item, replay, actual, last, chained))
    return plans


def _insert(tx: _Transaction, plans: list[_Plan]) -> list[AppendResult]:
    rows: list[tuple[Any, ...]] = []
    tags: list[tuple[str, int, str]] = []
    results: list[AppendResult] = []
    head, now = tx.head, tx.now
    for item, replay, actual, last, chained in plans:
        if replay is not None:
            results.append(replay)
            continue
        events = item.events
        stream_id = item.stream_id
        if not events:
            results.append(AppendResult(stream_id, actual, last))
            continue
        category = category_of(stream_id)
        first, version = head + 1, actual + 1
        digests = chain(chained, stream_id, version, events)
        for i, (event, digest) in enumerate(zip(events, digests, strict=True)):
            rows.append(
                (
                    first + i,
                    stream_id,
                    version + i,
                    category,
                    event.type,
                    event.event_id.bytes,
                    event.schema_version,
                    now,
                    digest,
                    event.metadata,
                    event.data,
                    join_tags(event.tags),
                )
            )
            if event.tags:
                tags += [(tag, first + i, event.type) for tag in event.tags]
        head += len(events)
        results.append(AppendResult(stream_id, actual + len(events), head))
    if rows:
        tx.con.executemany(_INSERT, rows)
    if tags:
        tx.con.executemany(_INSERT_TAG, tags)
    tx.head = head
    return results


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _settle(
    items: list[tuple[asyncio.Future[Any], Any]], head: int | None, on_commit: Callable[[int], None]
) -> None:
    for future, outcome in items:
        if future.done():  # the caller was cancelled; the outcome stands regardless
            continue
        if isinstance(outcome, _Failed):
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome)
    if head is not None:
        on_commit(head)


class GroupWriter:
    """The write side of one store: a queue, a thread and a connection."""

    def __init__(
        self, con: sqlite3.Connection, path: str, on_commit: Callable[[int], None]
    ) -> None:
        self._con = con
        self._path = path
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._backlog: deque[Request] = deque()
        self.commit_count = 0
        """Transactions committed: one per group, however many requests it held."""
        self.groups_begun = 0
        """Groups taken from the queue to be written (counted before BEGIN)."""
        self._skip_shared = 0  # groups left to run request by request
        self.running = True
        self._thread = threading.Thread(
            target=self._run, name=f"eventfold-sqlite-writer {path}", daemon=True
        )
        self._thread.start()

    # --- event loop side ------------------------------------------------------------

    def submit(self, request: Request) -> None:
        """Queue a request. The writer takes everything queued while it was busy
        (or while the event loop held the interpreter) as one group."""
        if not self.running:
            raise StoreClosed(f"{self._path}: the writer has stopped")
        self._queue.put(request)

    def stop(self) -> None:
        """Finish everything queued so far, then close the connection."""
        self._queue.put(None)

    def join(self) -> None:
        self._thread.join()

    # --- writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        pending, backlog = self._queue, self._backlog
        stopping = False
        try:
            while True:
                if not backlog:
                    if stopping:
                        return
                    item = pending.get()
                    if item is None:
                        stopping = True
                        continue
                    backlog.append(item)
                while not stopping and not pending.empty():  # the only consumer
                    item = pending.get_nowait()
                    if item is None:
                        stopping = True
                    else:
                        backlog.append(item)
                self._write(self._next_group())
        finally:
            self.running = False
            self._con.close()
            self._fail_leftovers()

    def _fail_leftovers(self) -> None:
        """Only after an unexpected error: nothing may wait forever."""
        leftovers = list(self._backlog)
        self._backlog.clear()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                leftovers.append(item)
        message = f"{self._path}: the writer stopped unexpectedly"
        if leftovers:
            self._deliver(leftovers, [_Failed(StoreError(message)) for _ in leftovers], None)

    def _next_group(self) -> list[Request]:
        group = [self._backlog.popleft()]
        events = group[0].size
        while self._backlog and len(group) < MAX_GROUP_REQUESTS:
            if events + self._backlog[0].size > MAX_GROUP_EVENTS:
                break
            request = self._backlog.popleft()
            events += request.size
            group.append(request)
        return group

    def _commit(self) -> None:
        self._con.execute("COMMIT")

    def _write(self, group: list[Request]) -> None:
        self.groups_begun += 1
        con = self._con
        alone = len(group) == 1
        doing = "begin a write transaction"
        try:
            con.execute("BEGIN IMMEDIATE")
            doing = "write"
            last = con.execute(_LAST_EVENT_SQL).fetchone()
            head, latest = (0, 0) if last is None else last
            head = max(head, con.execute(CUT_HEAD_SQL).fetchone()[0])
            # Taken under the write lock, and never before the log's last
            # event (a clock set back): recorded_at never decreases along
            # the log, so along no stream either.
            now = max(time.time_ns() // 1000, latest)
            tx = _Transaction(con, head, now, alone)
            outcomes = None
            if not alone and self._skip_shared == 0:
                outcomes = self._shared_pass(group, tx)
                if outcomes is None:  # conflicts happen here: go request by request a while
                    self._skip_shared = _SKIP_SHARED_GROUPS
            elif self._skip_shared:
                self._skip_shared -= 1
            if outcomes is None:
                outcomes = self._request_by_request(group, tx)
            if con.in_transaction:
                doing = "commit"
                self._commit()
                self.commit_count += 1
        except Exception as exc:
            try:
                if con.in_transaction:
                    con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            failures = [_Failed(self._group_error(exc, doing)) for _ in group]
            self._deliver(group, failures, None)
            return
        self._deliver(group, outcomes, tx.head)

    def _shared_pass(self, group: list[Request], tx: _Transaction) -> list[Any] | None:
        """Every request of the group under one savepoint, none of their own:
        the usual case, where every request succeeds, costs two statements per
        group instead of two per request. If any request fails or needs to
        undo what it wrote, the pass is rolled back, ``tx`` is left as it
        was, and None returned."""
        con, head = self._con, tx.head
        con.execute("SAVEPOINT eventfold_group")
        tx.shared = True
        try:
            outcomes = [request.apply(tx) for request in group]
        except Exception:
            if not con.in_transaction:  # SQLite gave up the whole transaction
                raise
            con.execute("ROLLBACK TO eventfold_group")
            tx.head = head
            outcomes = None
        finally:
            tx.shared = False
        con.execute("RELEASE eventfold_group")
        return outcomes

    def _request_by_request(self, group: list[Request], tx: _Transaction) -> list[Any]:
        """Each request under its own savepoint (none for a group of one), so
        that one failing gets its error and the others still commit."""
        con, alone = self._con, tx.alone
        outcomes: list[Any] = []
        for request in group:
            if not alone:
                con.execute("SAVEPOINT eventfold_request")
            try:
                outcome = request.apply(tx)
            except Exception as exc:
                if not con.in_transaction:  # SQLite gave up the whole transaction
                    raise
                if alone:
                    con.execute("ROLLBACK")
                else:
                    con.execute("ROLLBACK TO eventfold_request")
                    con.execute("RELEASE eventfold_request")
                    tx.head = con.execute(HEAD_SQL).fetchone()[0]
                if isinstance(exc, sqlite3.Error):
                    exc = store_error(self._path, exc, "write")
                outcomes.append(_Failed(exc))
            else:
                if not alone:
                    con.execute("RELEASE eventfold_request")
                outcomes.append(outcome)
        return outcomes

    def _group_error(self, exc: Exception, doing: str) -> BaseException:
        if isinstance(exc, sqlite3.Error):
            return store_error(self._path, exc, doing)
        error = StoreError(f"{self._path}: could not {doing}: {exc!r}")
        error.__cause__ = exc
        return error

    def _deliver(self, group: list[Request], outcomes: list[Any], head: int | None) -> None:
        if len(group) == 1:
            future = group[0].future
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                future.get_loop().call_soon_threadsafe(
                    _settle, [(future, outcomes[0])], head, self._on_commit
                )
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for request, outcome in zip(group, outcomes, strict=True):
            by_loop.setdefault(request.future.get_loop(), []).append((request.future, outcome))
        for loop, items in by_loop.items():
            # A closed loop raises RuntimeError: nobody there is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, items, head, self._on_commit)
