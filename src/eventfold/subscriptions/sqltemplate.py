"""SQL templates for read models: ``{table}`` names a declared table and ``?``
a parameter. Rendering swaps each ``{name}`` for the quoted physical name of
the table (only names on the projection's allow-list are accepted) and each
``?`` for the driver's placeholder. Values never enter the SQL text."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Literal

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
    out: list[str] = []
    i, n = 0, len(template)
    pg = dialect == "postgresql"
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
            chunk = template[i : j + 1]
            out.append(chunk.replace("%", "%%") if pg else chunk)
            i = j + 1
        elif c == "-" and template.startswith("--", i):
            j = template.find("\n", i)
            j = n if j < 0 else j
            out.append(template[i:j].replace("%", "%%") if pg else template[i:j])
            i = j
        elif c == "/" and template.startswith("/*", i):
            j = template.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(template[i:j].replace("%", "%%") if pg else template[i:j])
            i = j
        elif c == "{":
            j = template.find("}", i)
            name = template[i + 1 : j] if j > 0 else ""
            if name not in tables:
                known = ", ".join(sorted(tables)) or "none"
                raise InvalidArgument(
                    f"{what()}: {{{name}}} is not a declared table (declared: {known})",
                    argument="sql",
                )
            out.append(tables[name])
            i = j + 1
        elif c == "?":
            out.append("%s" if pg else "?")
            i += 1
        elif c == "%" and pg:
            out.append("%%")
            i += 1
        else:
            j = i + 1
            while j < n and template[j] not in "'\"-/{?%":
                j += 1
            out.append(template[i:j])
            i = j
    return "".join(out)
