"""Running one build of a projection: read a batch, apply it to the build's
tables and move the build's checkpoint in one transaction, switch the pointer
when a new build has caught up, and run effects for events seen live."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

import msgspec

from eventfold.domain.clocks import Clock
from eventfold.domain.events import Envelope
from eventfold.errors import ProjectionFailed
from eventfold.observability import tracing
from eventfold.serialization.codec import Codec, occurred_at
from eventfold.store.api import EventReader, RecordedEvent
from eventfold.subscriptions import builds
from eventfold.subscriptions.batching import BatchingTx
from eventfold.subscriptions.builds import Build
from eventfold.subscriptions.lanes import Lanes
from eventfold.subscriptions.projection import Dispatch, Projection
from eventfold.subscriptions.readmodel import BuildTx, Connection, ReadModel
from eventfold.subscriptions.retry import RetryPolicy
from eventfold.subscriptions.subscription import read_batch, wait_or_stop

Progress = Callable[[int, int, int], None]
"""``progress(position, head, handled)`` after each committed batch."""

Outcome = Literal["caught_up", "retired", "stopped"]
_Batch = tuple[int, list[RecordedEvent], int, bool]

Hold = Callable[[asyncio.Event], Awaitable[bool]]
"""``await hold(stop)``: if the projection is paused, wait (a while, or until
``stop`` is set or it is resumed) and return True; else return False at once."""


class _EventFailed(Exception):
    def __init__(self, index: int, cause: Exception) -> None:
        super().__init__(index, cause)
        self.index = index
        self.cause = cause


class _EffectFailed(Exception):
    def __init__(self, cause: Exception, attempts: int) -> None:
        super().__init__(cause, attempts)
        self.cause = cause
        self.attempts = attempts


_ONCE = RetryPolicy(attempts=1)


class _PipelineFailed(Exception):
    """Something failed in a pipelined batch; which event is not known."""


class _Paused(Exception):
    """The projection was paused after the batch was read: it is not applied."""


class _Fenced(Exception):
    """The build moved on without us (another worker, a switch, a drop)."""

    def __init__(self, current: Build | None) -> None:
        super().__init__(current)
        self.current = current


class BuildWorker:
    """Applies the log to one build. ``live``: keep following the log after
    catching up; otherwise return once caught up. A build that is still
    ``building`` becomes the active one (the pointer switches) as soon as a
    read comes back short. ``stop_position`` / ``stop_time`` freeze a
    time-travel build: only events up to that position, recorded (or, with
    ``stop_clock="occurred"``, happened) at or before that time, are applied.
    ``hold``: asked before each batch whether the projection is paused; a
    batch read before a pause is not applied after it (checked again in the
    batch's transaction)."""

    def __init__(
        self,
        store: EventReader,
        codec: Codec,
        read_model: ReadModel,
        projection: Projection,
        build: Build,
        *,
        live: bool,
        batch_size: int,
        retry: RetryPolicy,
        poll_interval: float = 1.0,
        progress: Progress | None = None,
        on_commit: Callable[[], None] | None = None,
        stop_position: int | None = None,
        stop_time: datetime | None = None,
        stop_clock: Clock = "recorded",
        hold: Hold | None = None,
    ) -> None:
        self.store = store
        self.read_model = read_model
        self.projection = projection
        self.build = build
        self.position = build.position
        self.live = live
        self.batch_size = batch_size
        self.retry = retry
        self.poll_interval = poll_interval
        self.progress = progress
        self.on_commit = on_commit
        self.stop_position = stop_position
        self.stop_time = stop_time
        self.stop_clock = stop_clock
        self.hold = hold
        self.handled = 0
        self.dispatch = Dispatch(projection, codec)
        self._codec = codec
        self._rendered: dict[str, str] = {}
        self._stop = asyncio.Event()
        self._effects_at: int | None = None
        self._reported = False

    def stop(self) -> None:
        self._stop.set()

    # --- the loop ---------------------------------------------------------------------

    async def run(self) -> Outcome:
        while True:
            try:
                return await self._loop()
            except _Fenced as fenced:
                current = fenced.current
                if current is None or current.state not in ("building", "active"):
                    return "retired"
                # Another worker moved this build's checkpoint: continue from there.
                self.build = current
                self.position = current.position

    async def _loop(self) -> Outcome:
        if self.build.state == "active":
            await self._catch_up_effects()
        ahead: asyncio.Future[_Batch] | None = None
        try:
            while not self._stop.is_set():
                if self.hold is not None and await self.hold(self._stop):
                    if ahead is not None:
                        ahead.cancel()  # read before the pause: read again after it
                        ahead = None
                    continue
                batch = await (ahead if ahead is not None else self._read(self.position))
                ahead = None
                head, records, scanned, short = batch
                wanted = self.dispatch.wanted(records)
                if self.progress is not None and not self._reported and records:
                    # The baseline: positions need not start at 1 (sparse on PostgreSQL).
                    self.progress(records[0].position - 1, max(head, self.position), 0)
                    self._reported = True
                if wanted or scanned > self.position:
                    if not short:
                        # Read the next batch while this one is written.
                        ahead = asyncio.ensure_future(self._read(scanned))
                    try:
                        await self._commit(wanted, scanned)
                    except _Paused:
                        if ahead is not None:
                            ahead.cancel()  # read from where the checkpoint is not
                            ahead = None
                        continue  # held at the top of the loop until resumed
                    if self.position != scanned and ahead is not None:
                        ahead.cancel()  # read from a place the checkpoint is not at
                        ahead = None
                    if self.progress is not None:
                        self.progress(self.position, max(head, self.position), self.handled)
                    if self.build.state == "active" and self.projection.has_effects:
                        await self._run_effects(records)
                if short:
                    if self.build.state == "building":
                        self.build = await self.read_model.write(
                            functools.partial(_activate, self.build)
                        )
                        if self.on_commit is not None:
                            self.on_commit()
                        if self.live and self.projection.has_effects:
                            await self._catch_up_effects()
                    if not self.live:
                        return "caught_up"
                    await wait_or_stop(self.store, self.position, self.poll_interval, self._stop)
            return "stopped"
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead

    async def _read(self, after: int) -> _Batch:
        """The next batch after ``after``: the head, the records (cut at the
        stop position and time), how far the log was looked at, and whether
        the read came back short."""
        head = await self.store.head_position()
        if self.stop_position is not None:
            head = min(head, self.stop_position)
        records, scanned, short = await read_batch(
            self.store, after, limit=self.batch_size, categories=self.projection.categories
        )
        if self.stop_position is not None:
            records = [r for r in records if r.position <= self.stop_position]
            scanned = min(scanned, self.stop_position)
            short = short or scanned >= self.stop_position
        if self.stop_time is not None:
            cutoff = self.stop_time
            if self.stop_clock == "occurred":
                records = [r for r in records if occurred_at(r) <= cutoff]
            else:
                records = [r for r in records if r.recorded_at <= cutoff]
        return head, records, scanned, short

    # --- applying a batch -------------------------------------------------------------

    async def _commit(self, records: list[RecordedEvent], upto: int) -> None:
        """Apply ``records`` and move the checkpoint to ``upto`` in one
        transaction. When an event fails, the events before it are committed
        on their own, and the failing one is retried per the policy."""
        failures = 0
        batched = True
        while True:
            try:
                await self._write(records, upto, batched)
                return
            except _PipelineFailed:
                # Run the batch again statement by statement to find the event.
                batched = False
                continue
            except _EventFailed as failed:
                if failed.index > 0:
                    before = records[: failed.index]
                    await self._commit(before, before[-1].position)
                    records = records[failed.index :]
                    failures = 1
                else:
                    failures += 1
                cause = failed.cause
                if not self.retry.should_retry(cause, failures):
                    failing = records[0]
                    raise ProjectionFailed(
                        self.projection.name,
                        stream_id=failing.stream_id,
                        version=failing.version,
                        position=failing.position,
                        type=failing.type,
                        cause=cause,
                        attempts=failures,
                    ) from cause
                await asyncio.sleep(self.retry.delay(failures))

    async def _write(self, records: list[RecordedEvent], upto: int, batched: bool) -> None:
        """Apply ``records`` in one transaction, in a span; ``batched``: the
        handlers' statements may be batched (``eventfold.subscriptions.batching``)
        and pipelined, so that an error cannot be pinned on its event."""
        attributes = {
            "eventfold.projection": self.projection.name,
            "eventfold.build": self.build.build,
            "eventfold.position": upto,
            "eventfold.event.count": len(records),
        }
        with tracing.span(f"apply {self.projection.name}", attributes=attributes) as batch:
            traced = tracing.carrier_of(batch) if batch is not None else None
            apply = functools.partial(
                self._apply, self.build, self.position, records, upto, batched, traced
            )
            pipeline = batched and self.read_model.pipelines
            try:
                state = await self.read_model.write(apply, pipeline=pipeline)
            except (_Fenced, _EventFailed, _Paused):
                raise
            except Exception as exc:
                if batched:
                    raise _PipelineFailed() from exc
                raise
        self.position = upto
        self.handled += len(records)
        self.build = msgspec.structs.replace(self.build, position=upto, state=state)
        if self.on_commit is not None:
            self.on_commit()

    def _apply(
        self,
        build: Build,
        expected: int,
        records: list[RecordedEvent],
        upto: int,
        batched: bool,
        traced: dict[str, str] | None,
        conn: Connection,
    ) -> builds.State:
        current = builds.get_build(conn, build.name, build.build, lock=True)
        if (
            current is None
            or current.state not in ("building", "active")
            or current.position != expected
        ):
            raise _Fenced(current)
        if self.hold is not None and builds.is_paused(conn, build.name):
            raise _Paused()
        tx = current.tx(conn, self._rendered, batched=batched)
        decode, dispatch, handlers = self._codec.decode, self.dispatch, self.dispatch.handlers
        for index, record in enumerate(records):
            name = record.type
            handler = handlers[name] if name in handlers else dispatch.handler(name)
            if handler is None:
                continue
            try:
                if traced is None:
                    handler(tx, decode(record))
                else:
                    self._traced(handler, tx, decode(record), traced)
            except Exception as exc:
                if batched and not _own_failure(tx, conn):
                    # The error may belong to an earlier event's statement.
                    raise _PipelineFailed() from exc
                raise _EventFailed(index, exc) from exc
        if isinstance(tx, BatchingTx):
            try:
                tx.flush()
            except Exception as exc:
                raise _PipelineFailed() from exc
        builds.advance(conn, current, upto, len(records))
        return current.state

    def _traced(
        self, handler: Any, tx: Any, envelope: Envelope[Any], parent: dict[str, str]
    ) -> None:
        """Apply one event in a span of the batch that links to the trace
        the event carries (the command that caused it, in another process)."""
        attributes = {
            "eventfold.projection": self.projection.name,
            "eventfold.stream_id": envelope.stream_id,
            "eventfold.version": envelope.version,
            "eventfold.position": envelope.position,
            "eventfold.event.type": envelope.type,
        }
        link = {k: v for k, v in envelope.metadata.extra.items() if k in tracing.TRACE_KEYS}
        span = tracing.start_span(
            f"apply {self.projection.name} {envelope.type}",
            parent=parent,
            links=[link],
            attributes=attributes,
        )
        try:
            handler(tx, envelope)
        except BaseException as exc:
            if span is not None:
                span.record_exception(exc)
            raise
        finally:
            if span is not None:
                span.end()

    # --- effects ----------------------------------------------------------------------

    async def _effects_position(self) -> int:
        if self._effects_at is None:
            row = await self.read_model.read(
                functools.partial(builds.projection_row, name=self.projection.name)
            )
            self._effects_at = row.effects_position if row is not None else 0
        return self._effects_at

    async def _catch_up_effects(self) -> None:
        """Run the effects of events this build has applied but whose effects
        have not run yet (the process stopped in between, or the build just
        became active)."""
        if not self.projection.has_effects or self.stop_time or self.stop_position:
            return
        while (at := await self._effects_position()) < self.position:
            records, _, _ = await read_batch(
                self.store, at, limit=self.batch_size, categories=self.projection.categories
            )
            records = [r for r in records if r.position <= self.position]
            if not records:
                await self._mark_effects(self.position)
                return
            await self._run_effects(records)

    async def _run_effects(self, records: list[RecordedEvent]) -> None:
        """The effects of ``records`` applied but not yet run, in the
        projection's lanes (one lane: one event after another); the effects
        position moves to the lanes' watermark, also when one fails."""
        at = await self._effects_position()
        pending = [r for r in records if r.position > at and r.position <= self.position]
        if not pending:
            return
        lanes = Lanes(
            self._effects_of,
            lanes=self.projection.lanes,
            key=self.projection.key,
            retry=_ONCE,  # each effect is retried on its own, in _effects_of
            failure=self._effect_failed,
            start=at,
            window=len(pending),
        )
        try:
            for record in pending:
                if self.dispatch.effects(record.type):
                    await lanes.put(self._codec.decode(record))
            lanes.skip_to(pending[-1].position)
            await lanes.drain()
        finally:
            try:
                await lanes.close()
            finally:
                await self._mark_effects(lanes.watermark)

    async def _effects_of(self, envelope: Envelope[Any]) -> None:
        for effect in self.dispatch.effects(envelope.type):
            failures = 0
            while True:
                try:
                    await effect(envelope)
                    break
                except Exception as exc:
                    failures += 1
                    if not self.retry.should_retry(exc, failures):
                        raise _EffectFailed(exc, failures) from exc
                    await asyncio.sleep(self.retry.delay(failures))

    def _effect_failed(self, envelope: Envelope[Any], exc: Exception, _: int) -> ProjectionFailed:
        cause, attempts = (exc.cause, exc.attempts) if isinstance(exc, _EffectFailed) else (exc, 1)
        failed = ProjectionFailed(
            self.projection.name,
            stream_id=envelope.stream_id,
            version=envelope.version,
            position=envelope.position,
            type=envelope.type,
            cause=cause,
            attempts=attempts,
        )
        failed.__cause__ = cause
        return failed

    async def _mark_effects(self, position: int) -> None:
        if position <= (self._effects_at or 0):
            return
        await self.read_model.write(functools.partial(_advance_effects, self.build, position))
        self._effects_at = position


def _own_failure(tx: BuildTx, conn: Connection) -> bool:
    """After a handler raised in a batched write: whether the error is its
    event's own. It is unless statements of earlier events may have run with
    it: in a pipeline (whose errors surface late) or in what the handler
    sent. Sending what earlier events left pending tells those apart."""
    if conn.pipelined or not isinstance(tx, BatchingTx):
        return False
    try:
        tx.flush()
    except Exception:
        return False
    return True


def _activate(build: Build, conn: Connection) -> Build:
    current = builds.get_build(conn, build.name, build.build, lock=True)
    if current is None or current.state != "building" or current.position != build.position:
        raise _Fenced(current)
    return builds.activate(conn, current)


def _advance_effects(build: Build, position: int, conn: Connection) -> bool:
    return builds.advance_effects(conn, build, position)
