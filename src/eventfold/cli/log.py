"""Commands that look at the log: streams, categories, statistics, one stream,
its audit history, its state at a moment, following the log live, and
read-only SQL."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Annotated, Any, cast

import msgspec
import typer

from eventfold.cli.common import (
    ClockOption,
    JsonOption,
    add_row,
    clock,
    console,
    load_object,
    parse_time,
    print_json,
    run,
    table,
)
from eventfold.cli.stores import ReadFromOption, RegistryOption, StoreOption, open_reader
from eventfold.domain.decider import Decider
from eventfold.domain.events import EventRegistry
from eventfold.repository import Repository
from eventfold.serialization.codec import Codec, decode_metadata
from eventfold.store.api import EventStore, RecordedEvent
from eventfold.store.capabilities import Inspector, SQLReader, require

app = typer.Typer()

TypeOption = Annotated[list[str] | None, typer.Option("--type", help="only these event types")]
CategoryOption = Annotated[
    list[str] | None, typer.Option("--category", help="only these categories")
]


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _event(r: RecordedEvent) -> dict[str, Any]:
    """A stored event as JSON: its data and metadata as JSON values."""
    return {
        "stream_id": r.stream_id,
        "version": r.version,
        "position": r.position,
        "event_id": str(r.event_id),
        "type": r.type,
        "schema_version": r.schema_version,
        "recorded_at": r.recorded_at,
        "data": msgspec.json.decode(r.data),
        "metadata": msgspec.json.decode(r.metadata),
    }


@app.command()
def streams(
    store: StoreOption,
    category: Annotated[str | None, typer.Option(help="only this category")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    read_from: ReadFromOption = "replica",
    json: JsonOption = False,
) -> None:
    """List streams, most recently written first."""

    async def main() -> None:
        async with open_reader(store, read_from=read_from) as opened:
            found = await require(opened, Inspector).list_streams(category=category, limit=limit)
        if json:
            print_json(found)
            return
        out = table("stream", "version", "last position", "last written (UTC)")
        for info in found:
            add_row(
                out, info.stream_id, info.version, info.last_position, _when(info.last_recorded_at)
            )
        console().print(out)

    run(main())


@app.command()
def categories(
    store: StoreOption, read_from: ReadFromOption = "replica", json: JsonOption = False
) -> None:
    """List categories with their stream and event counts."""

    async def main() -> None:
        async with open_reader(store, read_from=read_from) as opened:
            found = await require(opened, Inspector).list_categories()
        if json:
            print_json(found)
            return
        out = table("category", "streams", "events")
        for info in found:
            add_row(out, info.category, info.streams, info.events)
        console().print(out)

    run(main())


@app.command()
def stats(
    store: StoreOption, read_from: ReadFromOption = "replica", json: JsonOption = False
) -> None:
    """Store statistics: events, streams, head position, time span, types, size."""

    async def main() -> None:
        async with open_reader(store, read_from=read_from) as opened:
            found = await require(opened, Inspector).stats()
        if json:
            print_json(found)
            return
        out = console()
        out.print(f"events          {found.events}")
        out.print(f"streams         {found.streams}")
        out.print(f"head position   {found.head_position}")
        out.print(f"first event     {_when(found.first_recorded_at)}")
        out.print(f"last event      {_when(found.last_recorded_at)}")
        if found.size_bytes is not None:
            out.print(f"size on disk    {found.size_bytes / 1_048_576:.1f} MiB")
        types = table("type", "events")
        for name, count in found.types.items():
            add_row(types, name, count)
        out.print(types)

    run(main())


@app.command()
def show(
    stream: str,
    store: StoreOption,
    registry: RegistryOption = None,
    from_version: Annotated[int, typer.Option("--from", min=0)] = 1,
    to_version: Annotated[int | None, typer.Option("--to", min=0)] = None,
    backwards: Annotated[bool, typer.Option()] = False,
    limit: Annotated[int | None, typer.Option(min=0)] = None,
    read_from: ReadFromOption = "replica",
    json: JsonOption = False,
) -> None:
    """Show a stream's events (decrypted where --registry names personal fields
    and their keys still exist)."""

    async def main() -> None:
        async with open_reader(store, registry, read_from=read_from) as opened:
            found = [
                r
                async for r in opened.read_stream(
                    stream,
                    from_version=from_version,
                    to_version=to_version,
                    backwards=backwards,
                    limit=limit,
                )
            ]
        if json:
            print_json([_event(r) for r in found])
            return
        out = table("version", "position", "recorded (UTC)", "type", "data")
        for r in found:
            add_row(out, r.version, r.position, _when(r.recorded_at), r.type, _text(r.data))
        console().print(out)

    run(main())


@app.command()
def history(
    stream: str,
    store: StoreOption,
    read_from: ReadFromOption = "replica",
    json: JsonOption = False,
) -> None:
    """The audit timeline of a stream: when recorded, when it happened (if
    the application said), what, who, why, caused by what."""

    async def main() -> None:
        rows = []
        async with open_reader(store, read_from=read_from) as opened:
            async for r in opened.read_stream(stream):
                meta = decode_metadata(r)
                rows.append(
                    {
                        "version": r.version,
                        "recorded_at": r.recorded_at,
                        "occurred_at": meta.occurred_at,
                        "type": r.type,
                        "actor": meta.actor,
                        "reason": meta.extra.get("reason"),
                        "causation_id": meta.causation_id,
                        "correlation_id": meta.correlation_id,
                    }
                )
        if json:
            print_json(rows)
            return
        out = table(
            "version",
            "recorded (UTC)",
            "occurred (UTC)",
            "type",
            "actor",
            "reason",
            "causation",
            "correlation",
        )
        for row in rows:
            values = dict(row)
            for name in ("recorded_at", "occurred_at"):
                when = row[name]
                values[name] = _when(when if isinstance(when, dt.datetime) else None)
            add_row(out, *("" if v is None else v for v in values.values()))
        console().print(out)

    run(main())


@app.command()
def at(
    stream: str,
    store: StoreOption,
    time: Annotated[
        str,
        typer.Option("--time", help="ISO 8601; UTC unless an offset is given; a date is its start"),
    ],
    decider: Annotated[
        str, typer.Option("--decider", help="module:attribute naming the stream's Decider")
    ],
    registry: Annotated[
        str, typer.Option("--registry", help="module:attribute naming the EventRegistry")
    ],
    by: ClockOption = "recorded",
    read_from: ReadFromOption = "replica",
    json: JsonOption = False,
) -> None:
    """The state of a stream as it was at a moment: as recorded by then, or
    (--by occurred) as it had happened by then."""
    moment = parse_time(time)
    basis = clock(by)
    fold = load_object(decider, "--decider")
    events = load_object(registry, "--registry")
    if not isinstance(fold, Decider) or not isinstance(events, EventRegistry):
        raise typer.BadParameter("--decider must name a Decider and --registry an EventRegistry")

    async def main() -> None:
        async with open_reader(store, registry, read_from=read_from) as opened:
            # A load only reads: the view stands in for the store.
            loaded = await Repository(cast(EventStore, opened), fold, Codec(events)).load(
                stream, as_of=moment, by=basis
            )
        state: Any = msgspec.to_builtins(loaded.state)
        if json:
            print_json(
                {
                    "stream_id": stream,
                    "at": moment,
                    "by": basis,
                    "version": loaded.version,
                    "state": state,
                }
            )
            return
        console().print(
            f"{stream} at {moment.isoformat()} ({basis}): version {loaded.version}", markup=False
        )
        console().print_json(msgspec.json.encode(state).decode())

    run(main())


@app.command()
def tail(
    store: StoreOption,
    category: CategoryOption = None,
    type: TypeOption = None,
    from_position: Annotated[
        int | None, typer.Option("--from-position", help="default: only new events")
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option("--for", help="stop after this many seconds (0: print what is there)"),
    ] = None,
    read_from: ReadFromOption = "replica",
    json: Annotated[
        bool, typer.Option("--json", help="print each event as one line of JSON")
    ] = False,
) -> None:
    """Follow the log live, like tail -f."""

    async def main() -> None:
        out = console()
        async with open_reader(store, read_from=read_from) as opened:
            position = await opened.head_position() if from_position is None else from_position - 1
            loop = asyncio.get_running_loop()
            stop = None if seconds is None else loop.time() + seconds
            while True:  # one pass at least: --for 0 prints what is there and stops
                head = await opened.head_position()
                async for r in opened.read_all(
                    from_position=position + 1, categories=category, types=type
                ):
                    if r.position > head:
                        break
                    if json:
                        print_json(_event(r))
                    else:
                        out.print(_line(r), highlight=False, markup=False, soft_wrap=True)
                # Filtered reads skip events: everything up to the head is seen.
                position = max(position, head)
                if stop is not None and loop.time() >= stop:
                    break
                wait = 1.0 if stop is None else max(0.0, min(1.0, stop - loop.time()))
                await opened.wait_for_events(position, wait)

    with contextlib.suppress(KeyboardInterrupt):
        run(main())


def _line(r: RecordedEvent) -> str:
    return (
        f"@{r.position} {_when(r.recorded_at)} {r.stream_id} v{r.version} {r.type} {_text(r.data)}"
    )


@app.command()
def sql(
    query: str,
    store: StoreOption,
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    timeout: Annotated[float, typer.Option(min=0.1)] = 30.0,
    read_from: ReadFromOption = "replica",
    json: JsonOption = False,
) -> None:
    """Run one read-only SQL query over the event tables (events, snapshots)."""

    async def main() -> None:
        async with open_reader(store, read_from=read_from) as opened:
            result = await require(opened, SQLReader).sql(query, limit=limit, timeout=timeout)
        if json:
            print_json(
                {
                    "columns": result.columns,
                    "rows": [[_cell(v) for v in row] for row in result.rows],
                    "truncated": result.truncated,
                }
            )
            return
        out = table(*result.columns)
        for row in result.rows:
            add_row(out, *("" if v is None else v for v in row))
        console().print(out)
        if result.truncated:
            console().print(f"(first {limit} rows)")

    run(main())


def _cell(value: Any) -> Any:
    """A SQL result value as JSON: bytes as hex, anything else JSON knows as is."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, int | float | str | bool | dt.datetime | dt.date) or value is None:
        return value
    return str(value)
