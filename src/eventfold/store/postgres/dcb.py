"""DCB on PostgreSQL: appends without a stream, each checked against its
condition (``append_events``, functions.py) and grouped like stream appends,
and reads by query (one statement per page, see ``query_statement``).

Reads by query go to the primary: a decision's condition is checked there,
so the store mixes this in and routed views do not.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from eventfold.errors import ConditionFailed, DuplicateEventId, EventfoldError, StoreError
from eventfold.store.api import NewEvent, RecordedEvent
from eventfold.store.base import DCBPages
from eventfold.store.dcb import AppendCondition, Query, arms, replayed_position, validate_append
from eventfold.store.paging import Page
from eventfold.store.postgres.batch import EventsRequest, check_event_limits, encode_events
from eventfold.store.postgres.errors import (
    RETRIES,
    RETRYABLE,
    is_connection_failure,
    translate,
    unknown_outcome,
)
from eventfold.store.postgres.groupcommit import GroupCommitter
from eventfold.store.postgres.options import PostgresOptions
from eventfold.store.postgres.queries import Queries
from eventfold.store.postgres.reads import Conn


class PostgresDCB(DCBPages):
    """The ``DCBStore`` half of ``PostgresStore``, over the store's pool,
    statements and group committer."""

    options: PostgresOptions
    _pool: AsyncConnectionPool[Conn]
    _q: Queries
    _offset: int
    _channel: str | None
    _written: int
    _events_committer: GroupCommitter[EventsRequest, int]

    @abc.abstractmethod
    async def _fetch_by_ids(
        self, ids: list[uuid.UUID], conn: Conn | None
    ) -> dict[uuid.UUID, RecordedEvent]:
        """The stored records of ``ids`` (those found), read on ``conn`` (a
        pooled connection if None)."""

    @abc.abstractmethod
    async def _see_own_writes(self) -> None:
        """Wait until this store's own writes are visible to its readers."""

    @abc.abstractmethod
    async def _fetch_records(
        self, query: str, params: Sequence[Any], what: str
    ) -> list[RecordedEvent]:
        """Records of an event query."""

    async def _append_events(
        self, events: list[NewEvent], condition: AppendCondition | None
    ) -> int:
        check_event_limits(events)
        request = EventsRequest(events, condition)
        if self.options.group_commit:
            position = await self._events_committer.submit(request)
        else:
            outcome = await self._events_alone(request)
            if isinstance(outcome, BaseException):
                raise outcome
            position = outcome
        self._written = max(self._written, position)
        return position

    async def append_events_within(
        self,
        conn: psycopg.AsyncConnection[Any],
        events: Sequence[NewEvent],
        condition: AppendCondition | None = None,
    ) -> int:
        """A DCB append inside the caller's open transaction on ``conn`` (it
        must be the transaction's first write): its locks are held, and its
        events become visible, when the caller commits."""
        checked, rule = validate_append(events, condition)
        self.check_open()
        check_event_limits(checked)
        try:
            (outcome,) = await self._events_on(conn, [EventsRequest(checked, rule)])
        except psycopg.Error as exc:
            raise translate(exc, "append_events") from None
        if outcome is None:
            raise StoreError("append_events: stored event ids vanished during the append")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _run_events(self, requests: list[EventsRequest]) -> list[int | BaseException]:
        """A group of DCB appends in one statement (one transaction): each
        request checked against the store and the requests before it."""
        if len(requests) == 1 or _shares_ids(requests):
            return [await self._events_alone(request) for request in requests]
        try:
            async with self._pool.connection() as conn:
                outcomes = await self._events_on(conn, requests)
        except Exception as exc:
            if is_connection_failure(exc):
                error = unknown_outcome(exc)
                return [error for _ in requests]
            if not isinstance(exc, psycopg.Error | EventfoldError):
                raise
            # Something one request did broke the shared statement: each alone.
            return [await self._events_alone(request) for request in requests]
        return [
            await self._events_alone(request) if outcome is None else outcome
            for request, outcome in zip(requests, outcomes, strict=True)
        ]

    async def _events_alone(self, request: EventsRequest) -> int | BaseException:
        """One DCB append in a statement of its own, retried after a conflict
        with a concurrent transaction storing the same event ids."""
        error: psycopg.Error | None = None
        for _attempt in range(RETRIES):
            try:
                async with self._pool.connection() as conn:
                    (outcome,) = await self._events_on(conn, [request])
            except Exception as exc:
                if is_connection_failure(exc):
                    return unknown_outcome(exc)
                if isinstance(exc, EventfoldError):
                    return exc
                if not isinstance(exc, psycopg.Error):
                    raise
                error = exc
                if not isinstance(exc, RETRYABLE):
                    break
                continue
            if outcome is not None:  # None: the stored ids vanished; append anew
                return outcome
        if error is None:
            return StoreError("append_events: the event ids kept changing under it")
        return translate(error, "append_events")

    async def _events_on(
        self, conn: Conn, requests: list[EventsRequest]
    ) -> list[int | BaseException | None]:
        """Run ``append_events`` for ``requests`` on ``conn``: per request the
        position of its last event (the original one for a retry), its
        error, or None if ids it found stored are gone."""
        cur = await conn.execute(self._q.append_events, encode_events(requests, self._channel))
        rows = await cur.fetchall()
        if len(rows) != len(requests):
            raise StoreError(f"append_events returned {len(rows)} rows for {len(requests)}")
        outcomes: list[int | BaseException | None] = []
        for request, (_, status, position) in zip(requests, rows, strict=True):
            condition = request.condition
            if status == 0:
                outcomes.append(int(position))
            elif status == 1 and condition is not None:
                outcomes.append(ConditionFailed(condition.query, condition.after, int(position)))
            else:  # some ids are stored: a retry, or a conflict
                ids = [event.event_id for event in request.events]
                stored = await self._fetch_by_ids(ids, conn)
                try:
                    outcomes.append(replayed_position(request.events, stored))
                except DuplicateEventId as exc:
                    outcomes.append(exc)
        return outcomes

    async def _before_query_read(self) -> None:
        await self._see_own_writes()

    async def _query_page(self, query: Query, position: int, backwards: bool, want: int) -> Page:
        sql, params = self.query_statement(query, position, backwards, want)
        page = await self._fetch_records(sql, params, "read")
        return page, len(page) < want

    def query_statement(
        self, query: Query, position: int, backwards: bool, want: int
    ) -> tuple[str, list[Any]]:
        """The statement (and its parameters) that reads a page of ``want``
        events of ``query`` from ``position`` (inclusive): the one
        ``read(query)`` runs, for EXPLAIN (docs/dcb.md shows its plans)."""
        if query.match_all:
            return self._q.dcb_all[backwards], [position, self._offset, want]
        scans = arms(query)
        by_type = [arm for arm in scans if arm.by == "type"]
        by_tag = [arm for arm in scans if arm.by == "tag"]
        params: list[Any] = []
        for arm in by_type:
            params += [arm.key, position, self._offset, want]
        for arm in by_tag:
            types = list(arm.types)
            params += [arm.key, position, self._offset, types, types, list(arm.tags), want]
        params.append(want)
        return self._q.dcb(len(by_type), len(by_tag), backwards), params


def _shares_ids(requests: list[EventsRequest]) -> bool:
    """Two DCB appends of a group carry the same event id (the group then runs
    one at a time, so that the second one sees the first as stored)."""
    ids = [event.event_id for request in requests for event in request.events]
    return len(set(ids)) != len(ids)
