"""URLs: how a URL names a backend, and the one parser of SQLite URLs.

Each kind of backend (event stores, read models, key stores, outcome stores,
checkpoint stores, buses) keeps one ``SchemeRegistry``: the URL's scheme picks
what opens it, and a third party adds a scheme with that kind's public
``register_*`` function. Nothing else looks at a URL's scheme.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar
from urllib.parse import unquote

from eventfold.errors import ConfigurationError

T = TypeVar("T")

_SCHEME = re.compile(r"[a-z][a-z0-9.\-]*")


def scheme_of(url: object, *, setting: str = "url", what: str = "URL") -> str:
    """The scheme that picks a backend: lower case, without a ``+driver``
    suffix (``postgresql+psycopg://`` is ``postgresql``). For a list of URLs
    (``nats://a:4222,nats://b:4222``), the first one's."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"not a {what}: {url!r}", setting=setting)
    return url.split("://", 1)[0].strip().lower().split("+", 1)[0]


class SchemeRegistry(Generic[T]):
    """URL schemes of one kind of backend, each with what opens it (an
    ``entry``: usually a function ``opener(url, **options)``)."""

    def __init__(self, what: str, setting: str) -> None:
        self.what = what
        self.setting = setting
        self._entries: dict[str, T] = {}

    def register(self, scheme: str, entry: T) -> None:
        """Make URLs of ``scheme`` (lower case, no ``://``) open with ``entry``;
        registering a scheme again replaces what opens it."""
        if not isinstance(scheme, str) or not _SCHEME.fullmatch(scheme):
            raise ConfigurationError(
                f"a URL scheme is lower-case letters, digits, '.', '-' (got {scheme!r})",
                setting="scheme",
            )
        self._entries[scheme] = entry

    def schemes(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, url: object) -> T:
        """What opens ``url``; ConfigurationError naming the known schemes if none."""
        scheme = scheme_of(url, setting=self.setting, what=f"{self.what} URL")
        found = self._entries.get(scheme)
        if found is None:
            known = ", ".join(f"{s}://" for s in self.schemes())
            raise ConfigurationError(
                f"no {self.what} for scheme {scheme!r} (known: {known})", setting=self.setting
            )
        return found


def split_sqlite_url(url: object, *, setting: str = "url") -> tuple[str, str]:
    """``sqlite:///relative.db?query`` or ``sqlite:////absolute/path.db?query``
    as (path, query), the way SQLAlchemy reads them: three slashes then a
    relative path, four slashes then an absolute one; the path is
    percent-decoded. A URL naming no file (``:memory:``, ``file:`` URIs) or
    with a host is refused."""
    if not isinstance(url, str) or "://" not in url or scheme_of(url) != "sqlite":
        raise ConfigurationError(f"not a SQLite URL: {url!r}", setting=setting)
    rest, _, query = url.split("://", 1)[1].partition("?")
    if not rest.startswith("/"):
        raise ConfigurationError(
            f"SQLite URLs have no host: use sqlite:///relative.db or sqlite:////abs/path.db, "
            f"not {url!r}",
            setting=setting,
        )
    path = unquote(rest[1:])
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ConfigurationError(
            f"{url!r} names no database file (use memory:// for a store in memory)",
            setting=setting,
        )
    if "\x00" in path:
        raise ConfigurationError(f"{url!r}: NUL in the file name", setting=setting)
    return path, query
