"""SQL templates for read models: ``{table}`` names a declared table and ``?``
a parameter. Rendering swaps each ``{name}`` for the quoted physical name of
the table (only names on the projection's allow-list are accepted) and each
``?`` for the driver's placeholder. Values never enter the SQL text."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from eventfold.errors import InvalidArgument

Dialect = Literal["sqlite", "postgresql"]

NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
"""Logical table, index and projection names: lower case, at most 40 characters
(PostgreSQL identifiers stop at 63 bytes and versioned names add a suffix)."""

_PHYSICAL = re.compile(r"[a-z][a-z0-9_]{0,62}")


def check_name(name: object, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidArgument(
            f"{what} {name!r} must be lower-case letters, digits and '_', starting with a "
            "letter, at most 40 characters",
            argument=what,
        )
    return name


def quote_sqlite(physical: str) -> str:
    """Quote a generated identifier for SQLite (after checking its shape)."""
    if not _PHYSICAL.fullmatch(physical):
        raise InvalidArgument(f"not a valid table name: {physical!r}", argument="table")
    return f'"{physical}"'


Piece = Literal["text", "quoted", "table", "param"]


def _pieces(template: str, what: Callable[[], str]) -> Iterator[tuple[Piece, str]]:
    """A template cut into plain text, quoted strings or identifiers and
    comments (``quoted``: nothing in them is special), ``{table}`` references
    (the name) and ``?`` placeholders."""
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c in "'\"":
            j = i + 1
            while j < n:
                if template[j] == c:
                    if j + 1 < n and template[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                raise InvalidArgument(f"{what()}: unterminated quote in {template!r}")
            yield "quoted", template[i : j + 1]
            i = j + 1
        elif c == "-" and template.startswith("--", i):
            j = template.find("\n", i)
            j = n if j < 0 else j
            yield "quoted", template[i:j]
            i = j
        elif c == "/" and template.startswith("/*", i):
            j = template.find("*/", i + 2)
            j = n if j < 0 else j + 2
            yield "quoted", template[i:j]
            i = j
        elif c == "{":
            j = template.find("}", i)
            yield "table", template[i + 1 : j] if j > 0 else ""
            i = j + 1 if j > 0 else n
        elif c == "?":
            yield "param", "?"
            i += 1
        else:
            j = i + 1
            while j < n and template[j] not in "'\"-/{?":
                j += 1
            yield "text", template[i:j]
            i = j


def render(
    template: str,
    tables: Mapping[str, str],
    dialect: Dialect,
    *,
    what: Callable[[], str] = lambda: "SQL",
) -> str:
    """Render ``template``. ``tables`` maps logical names to quoted physical
    ones. Quoted strings, quoted identifiers and comments pass through as they
    are (a ``?`` or ``{`` inside them is not special)."""
    pg = dialect == "postgresql"
    out: list[str] = []
    for kind, text in _pieces(template, what):
        if kind == "table":
            if text not in tables:
                known = ", ".join(sorted(tables)) or "none"
                raise InvalidArgument(
                    f"{what()}: {{{text}}} is not a declared table (declared: {known})",
                    argument="sql",
                )
            out.append(tables[text])
        elif kind == "param":
            out.append("%s" if pg else "?")
        else:
            out.append(text.replace("%", "%%") if pg else text)
    return "".join(out)


def expand_lists(template: str, params: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """Give a list (or tuple) parameter one ``?`` per item: ``sku IN (?)``
    with ``("apple", "pear")`` becomes ``sku IN (?, ?)``; an empty list
    becomes ``NULL`` (``IN (NULL)`` matches nothing). Other parameters are
    left as they are."""
    if not any(isinstance(p, list | tuple) for p in params):
        return template, tuple(params)
    out: list[str] = []
    flat: list[Any] = []
    values = iter(params)
    for kind, text in _pieces(template, lambda: "SQL"):
        if kind == "table":
            out.append(f"{{{text}}}")
            continue
        if kind != "param":
            out.append(text)
            continue
        try:
            value = next(values)
        except StopIteration:
            raise InvalidArgument(f"more '?' than parameters in {template!r}") from None
        if isinstance(value, list | tuple):
            out.append(", ".join("?" * len(value)) or "NULL")
            flat.extend(value)
        else:
            out.append("?")
            flat.append(value)
    return "".join(out), tuple(flat)
