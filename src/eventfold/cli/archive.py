"""``eventfold archive``: move old events to cold storage (resumable, with a
dry run), list what was moved, read it back, verify it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from eventfold.archive import ArchivedStore, Archiver, ArchiveRoot, Selection, verify_archive
from eventfold.archive.archiver import floor_of
from eventfold.cli.common import (
    JsonOption,
    add_row,
    console,
    parse_time,
    print_json,
    run,
    table,
)
from eventfold.cli.compliance import secret_from_env
from eventfold.cli.stores import RegistryOption, StoreOption, keys_for, load_registry
from eventfold.compliance.chain import verify
from eventfold.serialization.crypto import EncryptingStore
from eventfold.store.api import RecordedEvent
from eventfold.store.capabilities import ChainReader, StreamLifecycle, require
from eventfold.store.url import connect

app = typer.Typer(
    help="Move old events to cold storage (zstd-compressed JSON Lines) and read them back.",
    no_args_is_help=True,
)

RootOption = Annotated[
    Path, typer.Option("--root", envvar="EVENTFOLD_ARCHIVE", help="the archive directory")
]
KeyEnvOption = Annotated[
    str | None,
    typer.Option(
        "--key-env", help="environment variable with the chain key that signs (checks) cuts"
    ),
]


def _moment(value: str | None, option: str) -> datetime | None:
    return None if value is None else parse_time(value, option)


@contextlib.asynccontextmanager
async def _opened(url: str, root: Path, registry: str | None = None) -> AsyncIterator[Any]:
    """The existing store at ``url`` with its archive read back (and personal
    fields decrypted, with ``registry``)."""
    events = load_registry(registry)
    async with connect(url, create=False) as store:
        archived = ArchivedStore(store, ArchiveRoot(root))
        if events is None:
            yield archived
            return
        wrapped = EncryptingStore(archived, events, keys_for(url))
        try:
            yield wrapped
        finally:
            await wrapped.keys.close()


@app.command("run")
def run_command(
    store: StoreOption,
    root: RootOption,
    stream: Annotated[
        list[str] | None, typer.Option("--stream", help="archive this stream whole (repeatable)")
    ] = None,
    category: Annotated[str | None, typer.Option(help="only streams of this category")] = None,
    idle_since: Annotated[
        str | None,
        typer.Option(help="with --category: its streams not written since then, whole"),
    ] = None,
    older_than: Annotated[
        str | None, typer.Option(help="every event recorded before then (ISO 8601)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would move")] = False,
    segment_events: Annotated[int, typer.Option(min=1, help="events per segment file")] = 50_000,
    key_env: KeyEnvOption = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    json: JsonOption = False,
) -> None:
    """Write the selected events to segment files under --root, then remove
    them from the store (each stream's cut names its segment). Safe to kill:
    run it again and it finishes what was left."""
    selection = Selection(
        streams=tuple(stream or ()),
        category=category,
        idle_since=_moment(idle_since, "--idle-since"),
        older_than=_moment(older_than, "--older-than"),
    )

    async def main() -> dict[str, Any]:
        key = secret_from_env(key_env)
        async with connect(store, create=False) as opened:
            archiver = Archiver(opened, ArchiveRoot(root), key=key, segment_events=segment_events)
            moves = await archiver.plan(selection)
            total = sum(move.events for move in moves)
            if dry_run:
                return {"dry_run": True, "events": total, "streams": [m.stream_id for m in moves]}
            bar = Progress(
                TextColumn("archiving"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} events"),
                TimeRemainingColumn(),
                disable=not progress or json,
                console=console(),
            )
            with bar:
                task = bar.add_task("archive", total=total or None)
                outcome = await archiver.run(
                    selection, progress=lambda n: bar.update(task, completed=n)
                )
        return {
            "dry_run": False,
            "events": outcome.events,
            "streams": outcome.streams,
            "resumed": outcome.resumed,
            "segments": outcome.segments,
        }

    done = run(main())
    if json:
        print_json(done)
    elif done["dry_run"]:
        for name in done["streams"]:
            console().print(name, markup=False, highlight=False)
        console().print(
            f"would archive {done['events']} events of {len(done['streams'])} streams",
            markup=False,
        )
    else:
        console().print(
            f"archived {done['events']} events of {done['streams'] + done['resumed']} streams "
            f"into {len(done['segments'])} new segments ({done['resumed']} finished from "
            "an earlier run)",
            markup=False,
        )


@app.command("list")
def list_command(store: StoreOption, root: RootOption, json: JsonOption = False) -> None:
    """The archived parts of streams: versions, segment, when."""

    async def main() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        async with connect(store, create=False) as opened:
            lifecycle = require(opened, StreamLifecycle)
            floors: dict[str, int] = {}
            async for cut in lifecycle.read_cuts():
                first = floors.get(cut.stream_id, 1)
                if cut.reason == "archived" and cut.before_version > first:
                    rows.append(
                        {
                            "stream_id": cut.stream_id,
                            "first": first,
                            "last": cut.before_version - 1,
                            "segment": cut.archive,
                            "at": cut.at,
                        }
                    )
                floors[cut.stream_id] = max(first, cut.before_version)
        return rows

    rows = run(main())
    if json:
        print_json(rows)
        return
    out = table("stream", "versions", "segment", "archived at (UTC)")
    for row in rows:
        versions = f"{row['first']}..{row['last']}"
        add_row(out, row["stream_id"], versions, row["segment"], row["at"].isoformat())
    console().print(out)


def _row(record: RecordedEvent, floor: int) -> dict[str, Any]:
    data = record.data
    return {
        "version": record.version,
        "position": record.position,
        "recorded_at": record.recorded_at,
        "type": record.type,
        "archived": record.version < floor,
        "data": data.decode() if isinstance(data, bytes) else data,
    }


@app.command("show")
def show_command(
    stream: str,
    store: StoreOption,
    root: RootOption,
    registry: RegistryOption = None,
    json: JsonOption = False,
) -> None:
    """A stream's events, the archived ones read back in place."""

    async def main() -> list[dict[str, Any]]:
        async with _opened(store, root, registry) as opened:
            floor, _ = await floor_of(require(opened, StreamLifecycle), stream)
            return [_row(r, floor) async for r in opened.read_stream(stream)]

    rows = run(main())
    if json:
        print_json(rows)
        return
    out = table("version", "position", "recorded (UTC)", "type", "archived", "data")
    for row in rows:
        when = row["recorded_at"].isoformat()
        archived = "yes" if row["archived"] else ""
        add_row(out, row["version"], row["position"], when, row["type"], archived, row["data"])
    console().print(out)


@app.command("verify")
def verify_command(
    store: StoreOption, root: RootOption, key_env: KeyEnvOption = None, json: JsonOption = False
) -> None:
    """Check every hash chain across the archive boundary: the live events,
    and each archived part against the cut that removed it. Exit 1 naming
    each event edited, missing or out of place."""

    async def main() -> dict[str, Any]:
        key = secret_from_env(key_env)
        async with connect(store, create=False) as opened:
            live = await verify(require(opened, ChainReader), key=key)
            cold = await verify_archive(
                require(opened, StreamLifecycle), ArchiveRoot(root), key=key
            )
        return {
            "clean": live.clean and cold.clean,
            "live_events": live.events,
            "archived_events": cold.events,
            "findings": live.findings + cold.findings,
        }

    report = run(main())
    if json:
        print_json(report)
    elif report["clean"]:
        console().print(
            f"verified: {report['live_events']} live and {report['archived_events']} "
            "archived events, all intact",
            markup=False,
        )
    else:
        found = table("stream", "version", "problem", "detail", title="tampering found")
        for f in report["findings"]:
            add_row(found, f.stream_id, f.version, f.problem, f.detail)
        console().print(found)
    if not report["clean"]:
        raise typer.Exit(1)


__all__ = ["app"]
