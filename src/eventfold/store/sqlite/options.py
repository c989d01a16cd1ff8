"""The options of the SQLite backend: keywords, or query parameters of its
``sqlite:///path.db`` URL (split by ``eventfold.urls.split_sqlite_url``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from eventfold.errors import ConfigurationError
from eventfold.urls import split_sqlite_url

SYNCHRONOUS_LEVELS = {"NORMAL": 1, "FULL": 2, "EXTRA": 3}


@dataclass(frozen=True)
class SQLiteOptions:
    """What ``SQLiteStore.open`` was asked for.

    ``synchronous``: ``FULL`` (default) makes every acknowledged append survive
    power loss; ``NORMAL`` is relaxed: in WAL mode it survives a crash of the
    process but the last commits may be lost on power loss or an OS crash.
    ``EXTRA`` also syncs the directory. ``busy_timeout`` (milliseconds) bounds
    how long a writer waits for another process holding the write lock.
    ``readers`` is the number of read connections (and read threads).
    ``create=False`` refuses to create the file or its schema (StoreNotFound).
    """

    path: str
    synchronous: str = "FULL"
    busy_timeout: int = 5000
    readers: int = 4
    create: bool = True


def _as_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigurationError(
                f"sqlite option {name} must be an integer, not {value!r}", setting=name
            ) from None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(
            f"sqlite option {name} must be an integer from {low} to {high}, not {value!r}",
            setting=name,
        )
    return value


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(
        f"sqlite option {name} must be true or false, not {value!r}", setting=name
    )


def _synchronous(value: object) -> str:
    level = value.strip().upper() if isinstance(value, str) else None
    if level not in SYNCHRONOUS_LEVELS:
        raise ConfigurationError(
            f"sqlite option synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, "
            f"not {value!r}",
            setting="synchronous",
        )
    return level


def parse_sqlite_url(url: str, options: dict[str, Any]) -> SQLiteOptions:
    """Options come as keywords or URL query parameters (not both for one name)."""
    path, query = split_sqlite_url(url)
    merged: dict[str, object] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in merged:
            raise ConfigurationError(f"sqlite option {name} given twice in the URL", setting=name)
        merged[name] = value
    for name, value in options.items():
        if name in merged:
            raise ConfigurationError(
                f"sqlite option {name} given both in the URL and as a keyword", setting=name
            )
        merged[name] = value
    known = {"synchronous", "busy_timeout", "readers", "create"}
    for name in merged:
        if name not in known:
            raise ConfigurationError(
                f"unknown sqlite option {name!r} (known: {', '.join(sorted(known))})",
                setting=name,
            )
    settings: dict[str, Any] = {}
    if "synchronous" in merged:
        settings["synchronous"] = _synchronous(merged["synchronous"])
    if "busy_timeout" in merged:
        settings["busy_timeout"] = _as_int("busy_timeout", merged["busy_timeout"], 0, 86_400_000)
    if "readers" in merged:
        settings["readers"] = _as_int("readers", merged["readers"], 1, 64)
    if "create" in merged:
        settings["create"] = _as_bool("create", merged["create"])
    return SQLiteOptions(path=os.path.abspath(path), **settings)
