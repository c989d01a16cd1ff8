"""The ``eventfold`` command. Each command group lives in a module of its own
and is added here with ``app.add_typer``."""

from __future__ import annotations

import typing

import typer

from eventfold import __version__
from eventfold.cli import compliance, dev, init, lifecycle, log, projections, serve, tenants

_HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="eventfold",
    help="eventfold: event sourcing and CQRS for Python.",
    no_args_is_help=True,
    add_completion=False,
    context_settings=_HELP_OPTIONS,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"eventfold {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: typing.Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """eventfold: event sourcing and CQRS for Python."""


app.add_typer(projections.app, name="projections")
app.add_typer(dev.app, name="dev")
app.add_typer(tenants.tenants_app, name="tenants")
app.add_typer(tenants.keys_app, name="keys")
app.command("serve")(serve.serve)
app.command("init")(init.init)
app.registered_commands += log.app.registered_commands
app.registered_commands += compliance.app.registered_commands
app.registered_commands += lifecycle.app.registered_commands


def main() -> None:
    app()


__all__ = ["app", "main"]
