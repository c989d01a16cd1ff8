"""Helpers shared by command groups: loading the user's objects named as
``module:attribute``, reading times, running coroutines, reporting errors."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Coroutine
from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from eventfold.domain.clocks import Clock, check_clock, parse_moment
from eventfold.errors import EventfoldError, InvalidArgument

T = TypeVar("T")


def console() -> Console:
    """A console for this command's output (made per call, so the terminal
    width and COLUMNS in effect now apply)."""
    return Console()


def errors() -> Console:
    return Console(stderr=True)


def load_object(spec: str, option: str = "--app") -> Any:
    """Import ``module:attribute`` (the attribute may be dotted). The current
    directory is importable, as for ``python -m``."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise typer.BadParameter(f"expected module:attribute, got {spec!r}", param_hint=option)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        message = f"cannot import {module_name!r}: {exc}"
        raise typer.BadParameter(message, param_hint=option) from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise typer.BadParameter(
                f"{module_name!r} has no attribute {attribute!r}", param_hint=option
            ) from None
    return obj


def parse_time(text: str, option: str = "--time") -> datetime:
    """An ISO 8601 date or time from the command line, by the rule every
    door shares (``eventfold.domain.clocks.parse_moment``): a date alone is
    its start, a time without an offset is UTC."""
    try:
        return parse_moment(text, option)
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


ClockOption = Annotated[
    str,
    typer.Option(
        "--by",
        help="recorded: events recorded by then (what was known); occurred: events that "
        "had happened by then (Metadata.occurred_at, else the recording time)",
    ),
]


def clock(value: str) -> Clock:
    try:
        return check_clock(value)
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc), param_hint="--by") from None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; an eventfold error becomes a one-line message (its text
    shown as it is, never read as markup) and exit code 1."""
    try:
        return asyncio.run(coro)
    except EventfoldError as exc:
        message = f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))}"
        errors().print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


JsonOption = Annotated[
    bool, typer.Option("--json", help="print JSON (one document) instead of a table")
]


def print_json(value: Any) -> None:
    """``value`` as one JSON document on standard output (times in ISO 8601)."""
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def table(*columns: str, **options: Any) -> Table:
    """A table that shows every value whole: a value too wide for the
    terminal folds onto more lines instead of being cut short with "…"."""
    made = Table(**options)
    for column in columns:
        made.add_column(column, overflow="fold")
    return made


def add_row(to: Table, *values: object) -> None:
    """A row of values shown as they are (never read as markup)."""
    to.add_row(*(Text(str(value)) for value in values))
