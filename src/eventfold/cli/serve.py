"""``eventfold serve``: the command API and the query API over HTTP.

With no options: both in one process, on SQLite files in the current
directory, with the in-process bus. With ``--role command`` or ``--role
query`` (and ``--nats``): one side per process, each on its own database."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from eventfold.cli.common import errors, load_object
from eventfold.errors import EventfoldError

SERVICES_ENV = "EVENTFOLD_SERVICES"
DEFAULT_APP = "eventfold.examples.shop.services:service"


def load_definition(spec: str) -> object:
    from eventfold.services.runtime import ServiceDefinition

    obj = load_object(spec, "--app")
    if not isinstance(obj, ServiceDefinition) and callable(obj):
        obj = obj()
    if not isinstance(obj, ServiceDefinition):
        raise typer.BadParameter(
            f"{spec} is a {type(obj).__name__}, not a ServiceDefinition", param_hint="--app"
        )
    return obj


def serve(
    app: Annotated[
        str,
        typer.Option(
            "--app",
            envvar=SERVICES_ENV,
            help="module:attribute naming a ServiceDefinition (or a function returning one)",
        ),
    ] = DEFAULT_APP,
    role: Annotated[
        str,
        typer.Option("--role", help="all (both APIs), command or query"),
    ] = "all",
    store: Annotated[
        str, typer.Option("--store", envvar="EVENTFOLD_STORE", help="event store URL")
    ] = "sqlite:///eventfold.db",
    read_model: Annotated[
        str,
        typer.Option(
            "--read-model", envvar="EVENTFOLD_READ_MODEL", help="the query side's database URL"
        ),
    ] = "sqlite:///eventfold-reads.db",
    outcomes: Annotated[
        str | None,
        typer.Option(
            "--outcomes",
            envvar="EVENTFOLD_OUTCOMES",
            help="the command side's database (outcomes, checkpoints); default beside --store",
        ),
    ] = None,
    nats: Annotated[
        str | None,
        typer.Option(
            "--nats",
            envvar="EVENTFOLD_NATS",
            help="NATS URL(s), comma separated; without it the bus is in-process",
        ),
    ] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="subject and stream prefix")] = (
        "eventfold"
    ),
    replicas: Annotated[
        int, typer.Option("--replicas", min=1, max=5, help="JetStream stream replicas")
    ] = 1,
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    command_port: Annotated[
        int, typer.Option("--command-port", min=0, max=65535, help="0: any free port")
    ] = 8000,
    query_port: Annotated[
        int, typer.Option("--query-port", min=0, max=65535, help="0: any free port")
    ] = 8001,
    workers: Annotated[
        int, typer.Option("--workers", min=0, help="workers for queued commands")
    ] = 2,
    ack_wait: Annotated[
        float,
        typer.Option("--ack-wait", min=0.1, help="seconds before the bus redelivers a message"),
    ] = 30.0,
    max_body: Annotated[
        int, typer.Option("--max-body", min=1, help="largest request body in bytes")
    ] = 1024 * 1024,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")] = (
        "warning"
    ),
) -> None:
    """Serve the command and query APIs (OpenAPI at /schema on each)."""
    from eventfold.services.runtime import ServeConfig, ServiceDefinition
    from eventfold.services.server import serve as run_servers

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    definition = load_definition(app)
    assert isinstance(definition, ServiceDefinition)
    try:
        config = ServeConfig(
            role=role,  # type: ignore[arg-type]
            store=store,
            read_model=read_model,
            outcomes=outcomes,
            nats=nats,
            prefix=prefix,
            replicas=replicas,
            workers=workers,
            ack_wait=ack_wait,
            max_body_size=max_body,
        )
        asyncio.run(
            run_servers(
                definition,
                config,
                host=host,
                command_port=command_port,
                query_port=query_port,
                log_level=log_level,
                announce=lambda line: print(line, flush=True),
            )
        )
    except EventfoldError as exc:
        errors().print(f"[red]error:[/red] {type(exc).__name__}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
