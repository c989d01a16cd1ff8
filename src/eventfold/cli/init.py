"""``eventfold init PATH``: scaffold a new application (``eventfold.scaffold``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from eventfold.cli.common import console
from eventfold.errors import InvalidArgument
from eventfold.scaffold import package_name, scaffold


def init(
    path: Annotated[Path, typer.Argument(help="a new (or empty) folder for the project")],
    package: Annotated[
        str | None,
        typer.Option("--package", help="its Python package (default: from the folder's name)"),
    ] = None,
) -> None:
    """Start a new application: events, a decider, a projection, a service
    definition, given/when/then tests and a README with its two commands."""
    try:
        written = scaffold(path, package)
    except InvalidArgument as exc:
        hint = "--package" if exc.argument == "package" else "PATH"
        raise typer.BadParameter(str(exc), param_hint=hint) from None
    package = package if package is not None else package_name(path)
    out = console()
    out.print(f"created {path} ({len(written)} files); next:", highlight=False)
    for line in (
        f"cd {path}",
        "pip install -e '.[test]'   # once, unless eventfold[http] and pytest are here",
        "python -m pytest",
        f"eventfold serve --app {package}.services:service",
    ):
        out.print(f"  {line}", highlight=False, markup=False)
