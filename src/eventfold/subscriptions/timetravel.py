"""Build a projection as it was at a past position or time, into a database of
its own, for reports ("stock levels at the end of last month"). The result is
an ordinary read model: query it with ``query_read_model``."""

from __future__ import annotations

import functools
from datetime import datetime

from eventfold.domain.clocks import Clock, check_aware, check_clock
from eventfold.errors import InvalidArgument
from eventfold.serialization.codec import Codec
from eventfold.store.api import EventReader
from eventfold.subscriptions import builds
from eventfold.subscriptions.builds import Build
from eventfold.subscriptions.projection import Projection
from eventfold.subscriptions.readmodel import Connection, ReadModel
from eventfold.subscriptions.retry import RetryPolicy
from eventfold.subscriptions.worker import BuildWorker, Progress


async def build_as_of(
    store: EventReader,
    projection: Projection,
    codec: Codec,
    into: ReadModel,
    *,
    position: int | None = None,
    time: datetime | None = None,
    by: Clock = "recorded",
    batch_size: int = 1000,
    retry: RetryPolicy | None = None,
    progress: Progress | None = None,
) -> Build:
    """Apply the events up to ``position`` and/or recorded at or before
    ``time`` to fresh tables in ``into`` (which must not hold this projection
    yet). Effects never run. Returns the finished build, whose ``position`` is
    how far the log was read.

    With ``by="occurred"`` the events applied are those that had happened by
    ``time`` (``Metadata.occurred_at``, else the recording time), however
    late they were recorded, in the log's order."""
    if position is None and time is None:
        raise InvalidArgument("give a position, a time, or both", argument="position")
    if position is not None and (
        isinstance(position, bool) or not isinstance(position, int) or position < 0
    ):
        raise InvalidArgument(f"position must be an int >= 0, not {position!r}")
    check_clock(by)
    shown = None
    if time is not None:
        check_aware(time, "time")
        shown = time.isoformat() if by == "recorded" else f"{time.isoformat()} (occurred)"
    build = await into.write(functools.partial(_create, projection, position, shown))
    worker = BuildWorker(
        store,
        codec,
        into,
        projection,
        build,
        live=False,
        batch_size=batch_size,
        retry=retry if retry is not None else RetryPolicy(attempts=1),
        progress=progress,
        stop_position=position,
        stop_time=time,
        stop_clock=by,
    )
    await worker.run()
    return worker.build


def _create(
    projection: Projection, position: int | None, time: str | None, conn: Connection
) -> Build:
    return builds.create_as_of(conn, projection, as_of_position=position, as_of_time=time)
