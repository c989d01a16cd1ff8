"""What an operator does to a running query service (``Runtime``), from
the admin routes and the console alike: pause and resume a projection,
rebuild one (blue/green, in the background, with progress), retry or skip
a parked bus message, check the hash chains (in the background, with
progress). ``by`` names who asked (the authenticated principal), for the
records these actions leave."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from eventfold.compliance.chain import verify
from eventfold.errors import ConfigurationError
from eventfold.messaging.parking import Retried
from eventfold.services.operations import Operation
from eventfold.store.capabilities import ChainReader, Inspector, capability, require
from eventfold.store.checks import category_of
from eventfold.subscriptions.builds import Pause
from eventfold.subscriptions.projection import Dispatch
from eventfold.subscriptions.runner import ProjectionRunner

if TYPE_CHECKING:
    from eventfold.messaging.mirror import MirrorStore
    from eventfold.services.runtime import Runtime


class Rebuilding(msgspec.Struct, frozen=True):
    """A retried message applied behind the mirror's head: the projections
    being rebuilt to include it, with their operations."""

    retried: Retried
    rebuilds: dict[str, int]


def runner(runtime: Runtime) -> ProjectionRunner:
    if runtime.runner is None:
        raise ConfigurationError("this service runs no projections (its role is command)")
    return runtime.runner


def mirror(runtime: Runtime) -> MirrorStore:
    if runtime.mirror is None or runtime.consumer is None:
        raise ConfigurationError("this service keeps no mirror of the bus (its role is command)")
    return runtime.mirror


async def pause(runtime: Runtime, name: str, *, by: str | None) -> Pause:
    return await runner(runtime).pause(name, by=by)


async def resume(runtime: Runtime, name: str) -> bool:
    return await runner(runtime).resume(name)


def rebuild(runtime: Runtime, name: str, *, by: str | None, purge: bool = False) -> Operation:
    """Start a blue/green rebuild of ``name`` (or return the one running)."""
    projections = runner(runtime)
    projections.projections.get(name)  # UnknownProjection before anything starts
    running = runtime.operations.running("rebuild", name)
    if running is not None:
        return running

    async def work(op: Operation) -> dict[str, Any]:
        build = await projections.rebuild(name, progress=op.positions, purge=purge)
        return {"build": build.build, "version": build.version, "position": build.position}

    return runtime.operations.start("rebuild", name, work, by=by)


async def retry(
    runtime: Runtime, seq: int, *, identity: str | None = None, by: str | None
) -> Rebuilding | None:
    """Retry parked message ``seq`` of the events stream; None if it is not
    parked. Applied behind the mirror's head, the projections that handle
    it are rebuilt so that they include it."""
    store = mirror(runtime)
    stream = runtime.topology.events_stream
    retried = await store.retry(stream, seq, identity=identity, actor=by)
    if retried is None:
        return None
    rebuilds: dict[str, int] = {}
    if retried.outcome == "applied" and retried.behind:
        assert retried.stream_id is not None and retried.type is not None
        projections = runner(runtime)
        for projection in projections.projections:
            wanted = projection.categories is None or (
                category_of(retried.stream_id) in projection.categories
            )
            if wanted and Dispatch(projection, projections.codec).relevant(retried.type):
                rebuilds[projection.name] = rebuild(runtime, projection.name, by=by).id
    return Rebuilding(retried, rebuilds)


async def skip(runtime: Runtime, seq: int, *, identity: str | None = None, by: str | None) -> bool:
    store = mirror(runtime)
    return await store.skip(runtime.topology.events_stream, seq, identity=identity, actor=by)


def chain_reader(runtime: Runtime) -> ChainReader:
    """The event store's hash chain, where this service has the store."""
    if runtime.store is None:
        raise ConfigurationError(
            "the hash chains are checked where the event store is: this service has none "
            "(its role is query); use GET /admin/verify on the command API"
        )
    return require(runtime.store, ChainReader)


def check_chains(runtime: Runtime, *, by: str | None) -> Operation:
    """Start checking the hash chains (or return the check running)."""
    reader = chain_reader(runtime)
    running = runtime.operations.running("verify", "store")
    if running is not None:
        return running
    inspector = capability(runtime.store, Inspector) if runtime.store is not None else None

    async def work(op: Operation) -> dict[str, Any]:
        total = (await inspector.stats()).events if inspector is not None else 0
        report = await verify(reader, progress=lambda done: op.count(done, total))
        return {
            "clean": report.clean,
            "streams": report.streams,
            "events": report.events,
            "findings": [msgspec.to_builtins(f) for f in report.findings],
        }

    return runtime.operations.start("verify", "store", work, by=by)
