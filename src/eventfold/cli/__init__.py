"""The ``eventfold`` command. Each command group lives in a module of its own
and is added here with ``app.add_typer``."""

from __future__ import annotations

import typer

from eventfold.cli import compliance, dev, init, log, projections, serve, tenants

app = typer.Typer(
    name="eventfold",
    help="eventfold: event sourcing and CQRS for Python.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(projections.app, name="projections")
app.add_typer(dev.app, name="dev")
app.add_typer(tenants.tenants_app, name="tenants")
app.add_typer(tenants.keys_app, name="keys")
app.command("serve")(serve.serve)
app.command("init")(init.init)
app.registered_commands += log.app.registered_commands
app.registered_commands += compliance.app.registered_commands


def main() -> None:
    app()


__all__ = ["app", "main"]
