"""``eventfold projections``: list with lag, rebuild without downtime, build
as of a past moment, catch up. The projections come from ``--app
module:attribute`` naming a ``ProjectionSet`` (or a function returning one)."""

from __future__ import annotations

import functools
from typing import Annotated, Any

import typer
from rich.table import Table

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
)
from eventfold.cli.stores import RegistryOption, open_store
from eventfold.cli.tenants import TenantOption, TenantsOption, place_for
from eventfold.errors import UnknownProjection
from eventfold.store.url import connect
from eventfold.subscriptions.freshness import ProjectionStatus
from eventfold.subscriptions.progress import RichProgress
from eventfold.subscriptions.projection import ProjectionSet
from eventfold.subscriptions.readmodel import open_read_model
from eventfold.subscriptions.runner import ProjectionRunner
from eventfold.subscriptions.timetravel import build_as_of

app = typer.Typer(
    help="Read models: list them with their lag, rebuild, build as of a past moment.",
    no_args_is_help=True,
)

AppOption = Annotated[
    str,
    typer.Option(
        "--app",
        envvar="EVENTFOLD_APP",
        help="module:attribute naming a ProjectionSet (or a function returning one), "
        "e.g. eventfold.examples.shop.app:projections",
    ),
]
RequiredStoreOption = Annotated[
    str, typer.Option("--store", envvar="EVENTFOLD_STORE", help="event store URL")
]
RequiredReadModelOption = Annotated[
    str,
    typer.Option("--read-model", envvar="EVENTFOLD_READ_MODEL", help="read model database URL"),
]
StoreOption = Annotated[
    str | None,
    typer.Option("--store", envvar="EVENTFOLD_STORE", help="event store URL (or --tenant)"),
]
ReadModelOption = Annotated[
    str | None,
    typer.Option(
        "--read-model",
        envvar="EVENTFOLD_READ_MODEL",
        help="read model database URL (or --tenant)",
    ),
]
ProgressOption = Annotated[
    bool, typer.Option("--progress/--no-progress", help="show a progress bar")
]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="events per transaction")]


def load_projections(spec: str) -> ProjectionSet:
    obj = load_object(spec)
    if not isinstance(obj, ProjectionSet) and callable(obj):
        obj = obj()
    if not isinstance(obj, ProjectionSet):
        raise typer.BadParameter(
            f"{spec} is a {type(obj).__name__}, not a ProjectionSet", param_hint="--app"
        )
    return obj


def _age(seconds: float) -> str:
    if seconds < 1:
        return "0s" if seconds == 0 else "<1s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def status_table(rows: list[ProjectionStatus]) -> Table:
    table = Table(title="projections", title_justify="left")
    for column in ("name", "version", "serving", "position", "behind", "lag", "other builds"):
        justify: Any = "right" if column in ("position", "behind", "lag") else "left"
        table.add_column(column, justify=justify, overflow="fold")
    add = functools.partial(add_row, table)
    for row in rows:
        version = "-" if row.version < 0 else str(row.version)
        if row.active is None:
            serving, position = "nothing yet", "-"
        else:
            serving = f"build {row.active.build} (v{row.active.version})"
            if row.active.as_of is not None:
                serving += f" as of {row.active.as_of}"
            position = str(row.active.position)
        fresh = row.freshness
        behind = "-" if fresh is None else f"{fresh.events_behind}{'+' if fresh.capped else ''}"
        lag = "-" if fresh is None else _age(fresh.seconds_behind)
        others = ", ".join(
            f"build {b.build} (v{b.version}) {b.state} @{b.position}" for b in row.others
        )
        add(row.name, version, serving, position, behind, lag, others or "-")
    return table


def _databases(
    store: str | None, read_model: str | None, tenant: str | None, tenants: str | None
) -> tuple[str, str]:
    """The event store and read model to work on: the tenant's, or as given."""
    place = place_for(tenant, tenants)
    if place is not None:
        if store is not None or read_model is not None:
            raise typer.BadParameter(
                "give --store and --read-model, or --tenant", param_hint="--tenant"
            )
        return place.store, place.read_model
    if store is None or read_model is None:
        raise typer.BadParameter(
            "name --store and --read-model (or --tenant)", param_hint="--store"
        )
    return store, read_model


@app.command("list")
def list_projections(
    app_spec: AppOption,
    store: StoreOption = None,
    read_model: ReadModelOption = None,
    tenant: TenantOption = None,
    tenants: TenantsOption = None,
    json: JsonOption = False,
) -> None:
    """Each projection: the build serving queries, its position, and how far behind it is."""
    projections = load_projections(app_spec)
    store, read_model = _databases(store, read_model, tenant, tenants)

    async def go() -> list[ProjectionStatus]:
        async with connect(store, create=False) as events, open_read_model(read_model) as reads:
            return await ProjectionRunner(events, reads, projections).status()

    found = run(go())
    if json:
        print_json(found)
    else:
        console().print(status_table(found))


@app.command("rebuild")
def rebuild(
    name: Annotated[str, typer.Argument(help="the projection to rebuild")],
    app_spec: AppOption,
    store: StoreOption = None,
    read_model: ReadModelOption = None,
    progress: ProgressOption = True,
    batch_size: BatchOption = 1000,
    purge: Annotated[
        bool,
        typer.Option(
            "--purge",
            help="drop the replaced tables at once and compact (after forgetting a subject)",
        ),
    ] = False,
    registry: RegistryOption = None,
    tenant: TenantOption = None,
    tenants: TenantsOption = None,
) -> None:
    """Build NAME again into fresh tables from the first event while the current
    tables keep answering queries; switch queries over once it has caught up.
    With --tenant, that tenant's."""
    projections = load_projections(app_spec)
    store, read_model = _databases(store, read_model, tenant, tenants)
    if name not in projections.names:
        raise typer.BadParameter(str(UnknownProjection(name, projections.names)))

    async def go() -> str:
        async with open_store(store, registry) as events, open_read_model(read_model) as reads:
            runner = ProjectionRunner(events, reads, projections, batch_size=batch_size)
            if progress:
                with RichProgress(f"rebuild {name}", console=console()) as bar:
                    build = await runner.rebuild(name, progress=bar, purge=purge)
            else:
                build = await runner.rebuild(name, purge=purge)
            return (
                f"{name}: build {build.build} (v{build.version}) serves queries now, "
                f"at position {build.position}, {build.handled} events applied"
            )

    console().print(run(go()))


@app.command("build-as-of")
def build_as_of_command(
    name: Annotated[str, typer.Argument(help="the projection to build")],
    app_spec: AppOption,
    store: RequiredStoreOption,
    into: Annotated[str, typer.Option("--into", help="a database of its own for the result (URL)")],
    time: Annotated[
        str | None,
        typer.Option(
            "--time",
            help="events recorded (--by occurred: happened) at or before this ISO 8601 "
            "time; UTC unless an offset is given; a date is its start",
        ),
    ] = None,
    position: Annotated[
        int | None, typer.Option("--position", min=0, help="events up to this position")
    ] = None,
    by: ClockOption = "recorded",
    progress: ProgressOption = True,
    batch_size: BatchOption = 1000,
) -> None:
    """Build NAME as it was at a past time or position into the database --into,
    for reports ("stock levels at the end of last month")."""
    basis = clock(by)
    if time is None and position is None:
        raise typer.BadParameter("give --time, --position or both")
    projections = load_projections(app_spec)
    if name not in projections.names:
        raise typer.BadParameter(str(UnknownProjection(name, projections.names)))
    projection = projections.get(name)
    when = parse_time(time) if time is not None else None

    async def go() -> str:
        async with connect(store, create=False) as events, open_read_model(into) as target:
            args: dict[str, Any] = {
                "position": position,
                "time": when,
                "by": basis,
                "batch_size": batch_size,
            }
            if progress:
                with RichProgress(f"{name} as of {time or position}", console=console()) as bar:
                    build = await build_as_of(
                        events, projection, projections.codec, target, progress=bar, **args
                    )
            else:
                build = await build_as_of(events, projection, projections.codec, target, **args)
            tables = ", ".join(build.physical(t) for t in build.tables)
            return (
                f"{name} as of {time or f'position {position}'}: {build.handled} events "
                f"applied into {into} (tables {tables})"
            )

    console().print(run(go()))


@app.command("catch-up")
def catch_up(
    app_spec: AppOption,
    store: RequiredStoreOption,
    read_model: RequiredReadModelOption,
    names: Annotated[
        list[str] | None, typer.Argument(help="projections to catch up (default: all)")
    ] = None,
    batch_size: BatchOption = 1000,
) -> None:
    """Bring projections up to the head of the log once (new versions switch in)."""
    projections = load_projections(app_spec)

    async def go() -> list[ProjectionStatus]:
        async with connect(store, create=False) as events, open_read_model(read_model) as reads:
            runner = ProjectionRunner(events, reads, projections, batch_size=batch_size)
            await runner.catch_up(names or None)
            return await runner.status()

    console().print(status_table(run(go())))
