"""Reading a read model: a query through the pointer, a build's position, and
the builds stored for each projection."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from eventfold.errors import ProjectionNotReady
from eventfold.subscriptions import builds
from eventfold.subscriptions.builds import Build
from eventfold.subscriptions.freshness import BuildStatus, QueryResult
from eventfold.subscriptions.readmodel import Connection, ReadModel


async def query_read_model(
    read_model: ReadModel, projection: str, sql: str, params: Sequence[Any] = ()
) -> QueryResult:
    """Run ``sql`` (``{table}`` names, ``?`` parameters) against the build of
    ``projection`` that queries read now. The pointer, the build's checkpoint
    and the rows come from one read transaction, so a switch to a new build
    is seen entirely or not at all."""
    result = await read_model.read(functools.partial(run_query, projection, sql, tuple(params)))
    if result is None:
        raise ProjectionNotReady(projection)
    return result


def run_query(name: str, sql: str, params: tuple[Any, ...], conn: Connection) -> QueryResult | None:
    """In a read transaction: the pointer, then the rows of the build it names."""
    build = builds.active_build(conn, name)
    if build is None:
        return None
    cur = build.tx(conn).execute(sql, params)
    rows = list(cur.fetchall())
    description = getattr(cur, "description", None) or ()
    return QueryResult(
        rows=rows,
        columns=[d[0] for d in description],
        projection=name,
        build=build.build,
        version=build.version,
        position=build.position,
    )


def active_position(name: str, conn: Connection) -> int | None:
    build = builds.active_build(conn, name)
    return None if build is None else build.position


async def stored_builds(
    read_model: ReadModel,
) -> dict[str, tuple[BuildStatus | None, list[BuildStatus]]]:
    """Per projection in the read model: the build queries read, and the
    others that still have tables."""
    rows = await read_model.read(_stored)
    out: dict[str, tuple[BuildStatus | None, list[BuildStatus]]] = {}
    for name, active_no, found in rows:
        active: BuildStatus | None = None
        others: list[BuildStatus] = []
        for build in found:
            if build.state == "dropped":
                continue
            entry = BuildStatus(
                build.build,
                build.version,
                build.state,
                build.position,
                build.handled,
                [build.physical(t) for t in build.tables],
                _as_of(build),
            )
            if build.build == active_no:
                active = entry
            else:
                others.append(entry)
        out[name] = (active, others)
    return out


def _stored(conn: Connection) -> list[tuple[str, int | None, list[Build]]]:
    out = []
    for row in conn.execute("SELECT name, active_build FROM eventfold_projection").fetchall():
        out.append((row[0], row[1], builds.list_builds(conn, row[0])))
    return out


def _as_of(build: Build) -> str | None:
    parts = []
    if build.as_of_position is not None:
        parts.append(f"position {build.as_of_position}")
    if build.as_of_time is not None:
        parts.append(build.as_of_time)
    return ", ".join(parts) or None
