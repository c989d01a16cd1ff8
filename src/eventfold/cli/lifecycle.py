"""Commands that remove events (administration): truncate a stream, delete
one (soft, or for good), list the cut markers, and scavenge the categories
over their limits. Cuts are signed with the chain key named by
``--key-env`` (an environment variable: a secret never goes on the command
line); ``eventfold verify --key-env`` checks them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from eventfold.cli.common import JsonOption, add_row, console, print_json, run, table
from eventfold.cli.compliance import secret_from_env
from eventfold.cli.stores import StoreOption, open_store
from eventfold.errors import InvalidArgument
from eventfold.store.capabilities import StreamLifecycle, require
from eventfold.store.cuts import Cut
from eventfold.store.scavenge import Limits, Policy, Removal, apply, check_policy, plan, read_policy

app = typer.Typer()

KeyEnvOption = Annotated[
    str | None,
    typer.Option(
        "--key-env",
        help="environment variable with the chain key that signs the cut (unsigned if not given)",
    ),
]


def _cut_json(cut: Cut) -> dict[str, Any]:
    return {
        "stream_id": cut.stream_id,
        "before_version": cut.before_version,
        "anchor": cut.anchor.hex(),
        "reason": cut.reason,
        "at": cut.at,
        "archive": cut.archive,
        "signature": cut.signature,
    }


def _show_cut(cut: Cut | None, stream_id: str, json: bool) -> None:
    if json:
        print_json(None if cut is None else _cut_json(cut))
        return
    out = console()
    if cut is None:
        out.print(f"{stream_id}: nothing to remove", markup=False)
        return
    signed = "signed" if cut.signature else "unsigned"
    out.print(
        f"{cut.stream_id}: {cut.reason}, versions before {cut.before_version} removed "
        f"({signed} cut, anchor {cut.anchor.hex()[:16]}...)",
        markup=False,
    )


@app.command("truncate")
def truncate_command(
    stream_id: Annotated[str, typer.Argument(help="the stream")],
    before: Annotated[
        int, typer.Option("--before", help="remove the versions before this one (it stays)")
    ],
    store: StoreOption,
    key_env: KeyEnvOption = None,
    json: JsonOption = False,
) -> None:
    """Remove a stream's events before a version, recording a cut marker."""

    async def main() -> None:
        key = secret_from_env(key_env)
        async with open_store(store) as opened:
            cut = await require(opened, StreamLifecycle).truncate_stream(stream_id, before, key=key)
        _show_cut(cut, stream_id, json)

    run(main())


@app.command("delete-stream")
def delete_command(
    stream_id: Annotated[str, typer.Argument(help="the stream")],
    store: StoreOption,
    hard: Annotated[
        bool,
        typer.Option("--hard", help="for good: the stream can never be written again"),
    ] = False,
    key_env: KeyEnvOption = None,
    json: JsonOption = False,
) -> None:
    """Delete a stream: its events disappear from reads. Soft by default
    (it may be written again, its versions going on); --hard leaves a
    tombstone."""

    async def main() -> None:
        key = secret_from_env(key_env)
        async with open_store(store) as opened:
            cut = await require(opened, StreamLifecycle).delete_stream(
                stream_id, hard=hard, key=key
            )
        _show_cut(cut, stream_id, json)

    run(main())


@app.command("cuts")
def cuts_command(
    store: StoreOption,
    stream_id: Annotated[str | None, typer.Argument(help="only this stream")] = None,
    json: JsonOption = False,
) -> None:
    """List the cut markers: every removal of events, by stream."""

    async def main() -> list[Cut]:
        async with open_store(store) as opened:
            lifecycle = require(opened, StreamLifecycle)
            return [cut async for cut in lifecycle.read_cuts(stream_id)]

    cuts = run(main())
    if json:
        print_json([_cut_json(cut) for cut in cuts])
        return
    shown = table("stream", "before", "reason", "at", "archive", "signed", title="cuts")
    for cut in cuts:
        at = cut.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        add_row(
            shown,
            cut.stream_id,
            cut.before_version,
            cut.reason,
            at,
            cut.archive,
            "yes" if cut.signature else "no",
        )
    console().print(shown)


def _policy(
    path: Path | None, categories: list[str] | None, max_age: str | None, max_count: int | None
) -> Policy:
    if path is not None:
        if categories or max_age is not None or max_count is not None:
            raise InvalidArgument(
                "give --policy or --category with its limits, not both", argument="policy"
            )
        return read_policy(path)
    if not categories:
        raise InvalidArgument("give --policy FILE or --category NAME", argument="policy")
    limits = Limits(max_age=max_age, max_count=max_count)
    return check_policy({category: limits for category in categories})


@app.command("scavenge")
def scavenge_command(
    store: StoreOption,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help='a TOML file, one table per category: [order] max_age = "30d" max_count = 100',
        ),
    ] = None,
    category: Annotated[
        list[str] | None, typer.Option("--category", help="apply the limits to this category")
    ] = None,
    max_age: Annotated[
        str | None, typer.Option("--max-age", help="remove events older than this (30d, 12h)")
    ] = None,
    max_count: Annotated[
        int | None, typer.Option("--max-count", help="keep at most this many events a stream")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would be removed; remove nothing")
    ] = False,
    key_env: KeyEnvOption = None,
    json: JsonOption = False,
) -> None:
    """Truncate every stream of the given categories that is over its limits
    (max-age, max-count). Each stream's truncation is atomic: a scavenge
    stopped at any point is finished by running it again."""

    async def main() -> tuple[list[Removal], int]:
        rules = _policy(policy, category, max_age, max_count)
        key = secret_from_env(key_env)
        async with open_store(store) as opened:
            require(opened, StreamLifecycle)
            removals = [r async for r in plan(opened, rules, datetime.now(UTC))]
            if dry_run or not removals:
                return removals, 0
            columns = (
                TextColumn("scavenging"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
            )
            with Progress(*columns, console=console(), disable=json) as bar:
                task = bar.add_task("", total=len(removals))

                def advance(removal: Removal) -> None:
                    bar.update(task, advance=1, description=removal.stream_id)

                made = await apply(opened, removals, key=key, progress=advance)
            return removals, made

    removals, made = run(main())
    if json:
        print_json(
            {
                "dry_run": dry_run,
                "streams": len(removals),
                "events": sum(r.events for r in removals),
                "removals": removals,
            }
        )
        return
    out = console()
    if not removals:
        out.print("nothing to remove: every stream is within its limits")
        return
    shown = table(
        "stream", "version", "remove", "events", title="would remove" if dry_run else "removed"
    )
    for r in removals:
        add_row(shown, r.stream_id, r.version, f"{r.first}..{r.before_version - 1}", r.events)
    out.print(shown)
    events = sum(r.events for r in removals)
    if dry_run:
        out.print(f"dry run: {events} events in {len(removals)} streams would be removed")
    else:
        out.print(f"removed {events} events from {len(removals)} streams ({made} cuts recorded)")
