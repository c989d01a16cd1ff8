"""URL schemes: each kind of backend has one registry, a third party adds to
each with its ``register_*`` function, an unknown scheme is a clear
``ConfigurationError``, and nothing else dispatches on a URL's scheme.
SQLite URLs are parsed in one place."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import eventfold
from eventfold.errors import ConfigurationError
from eventfold.messaging import InProcessBus, open_bus, register_bus
from eventfold.serialization import MemoryKeyStore, open_key_store, register_key_store
from eventfold.services import MemoryOutcomeStore, open_outcomes, register_outcome_store
from eventfold.services.runtime import services_url
from eventfold.store import MemoryStore, database_beside, register_backend
from eventfold.subscriptions import (
    MemoryCheckpointStore,
    SQLiteReadModel,
    open_checkpoints,
    open_read_model,
    register_checkpoints,
    register_read_model,
)
from eventfold.urls import SchemeRegistry, scheme_of, split_sqlite_url

SRC = Path(eventfold.__file__).parent


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("memory://", "memory"),
        ("SQLite:///x.db", "sqlite"),
        ("postgresql+psycopg://u@h/db", "postgresql"),
        ("nats://a:4222,nats://b:4222", "nats"),
    ],
)
def test_scheme_of(url: str, scheme: str) -> None:
    assert scheme_of(url) == scheme


@pytest.mark.parametrize("url", ["", "no-scheme", None, 42, b"memory://"])
def test_what_is_not_a_url_is_a_configuration_error(url: Any) -> None:
    with pytest.raises(ConfigurationError):
        scheme_of(url)


def test_a_registry_names_the_known_schemes_and_refuses_bad_ones() -> None:
    registry: SchemeRegistry[int] = SchemeRegistry("widget store", "widgets")
    registry.register("one", 1)
    registry.register("two", 2)
    assert registry.entry("TWO://x") == 2
    with pytest.raises(ConfigurationError, match=r"no widget store for scheme 'three'") as info:
        registry.entry("three://x")
    assert "one://, two://" in str(info.value) and info.value.setting == "widgets"
    for bad in ["", "Upper", "with://", "sp ace", "1st", None]:
        with pytest.raises(ConfigurationError):
            registry.register(bad, 3)  # type: ignore[arg-type]


async def test_a_third_party_store_scheme() -> None:
    opened: list[tuple[str, dict[str, Any]]] = []

    async def open_mine(url: str, **options: Any) -> MemoryStore:
        opened.append((url, options))
        return MemoryStore(url)

    register_backend("mine-store", open_mine, beside=lambda url, name: f"{url}/{name}")
    async with eventfold.connect("mine-store://a", flavour="x") as store:
        await store.append("s-1", [eventfold.NewEvent("T", b"{}")])
        assert store.url == "mine-store://a"
    assert opened == [("mine-store://a", {"flavour": "x"})]
    assert database_beside("mine-store://a", "services") == "mine-store://a/services"
    register_backend("mine-plain", open_mine)
    with pytest.raises(ConfigurationError, match="no default database beside"):
        database_beside("mine-plain://a", "services")
    with pytest.raises(ConfigurationError, match=r"known: .*memory://"):
        await eventfold.connect("unknown-store://a")


def test_third_party_read_model_key_outcome_checkpoint_and_bus_schemes(tmp_path: Path) -> None:
    model = SQLiteReadModel(tmp_path / "reads.db")
    register_read_model("mine-rm", lambda url, **options: model)
    assert open_read_model("mine-rm://x") is model

    keys = MemoryKeyStore()
    register_key_store("mine-keys", lambda url, master_key=None: keys)
    assert open_key_store("mine-keys://x", master_key=b"k" * 32) is keys

    outcomes = MemoryOutcomeStore()
    register_outcome_store("mine-out", lambda url: outcomes)
    assert open_outcomes("mine-out://x") is outcomes

    checkpoints = MemoryCheckpointStore()
    register_checkpoints("mine-cp", lambda url: checkpoints)
    assert open_checkpoints("mine-cp://x") is checkpoints

    bus = InProcessBus()
    register_bus("mine-bus", lambda url, **credentials: bus)
    assert open_bus("mine-bus://x") is bus


@pytest.mark.parametrize(
    ("opener", "setting"),
    [
        (open_read_model, "read_model"),
        (open_key_store, "url"),
        (open_outcomes, "outcomes"),
        (open_checkpoints, "checkpoints"),
        (open_bus, "nats"),
    ],
)
def test_unknown_schemes_are_configuration_errors(opener: Any, setting: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        opener("gopher://x")
    assert "gopher" in str(info.value) and info.value.setting == setting


def test_the_shipped_schemes() -> None:
    assert isinstance(open_outcomes("memory://"), MemoryOutcomeStore)
    assert isinstance(open_checkpoints("memory://"), MemoryCheckpointStore)
    assert isinstance(open_bus("memory://"), InProcessBus)
    assert isinstance(open_bus(None), InProcessBus)
    assert isinstance(open_read_model("sqlite:///reads.db"), SQLiteReadModel)


@pytest.mark.parametrize(
    ("store", "services"),
    [
        ("memory://", "memory://"),
        ("sqlite:///eventfold.db", "sqlite:///eventfold-services.db"),
        ("sqlite:////srv/app/events", "sqlite:////srv/app/events-services.db"),
        ("postgresql://u@h/db", "postgresql://u@h/db?schema=eventfold_services"),
        (
            "postgres://u@h/db?schema=s&sslmode=off",
            "postgres://u@h/db?schema=s_services&sslmode=off",
        ),
    ],
)
def test_the_services_database_goes_beside_the_store(store: str, services: str) -> None:
    assert services_url(store) == services
    assert database_beside(store, "services") == services


@pytest.mark.parametrize(
    ("url", "path", "query"),
    [
        ("sqlite:///events.db", "events.db", ""),
        ("sqlite:////abs/events.db?synchronous=NORMAL", "/abs/events.db", "synchronous=NORMAL"),
        ("sqlite:///with%20space.db", "with space.db", ""),
        ("sqlite+pysqlite:///x.db", "x.db", ""),
    ],
)
def test_sqlite_urls(url: str, path: str, query: str) -> None:
    assert split_sqlite_url(url) == (path, query)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///file:x.db?mode=memory",
        "sqlite://host/x.db",
        "sqlite:///x%00.db",
        "memory://",
        "x.db",
    ],
)
def test_urls_that_name_no_sqlite_file_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        split_sqlite_url(url)


# Places that look at a URL's scheme to check it, not to pick what opens it.
_CHECKS_NOT_DISPATCH = {
    "urls.py": "the registries and the SQLite URL parser themselves",
    "messaging/jetstream.py": "checks every server URL is nats:// or tls://",
    "store/postgres/options.py": "checks its URL is postgresql:// or postgres://",
    "store/url.py": "names the scheme in an error message",
    "security/authn.py": "an HTTP authentication scheme (Bearer, ApiKey), not a URL's",
    "security/jwt.py": "fetches a JWKS over http(s):// or reads it from a file",
    "console/pages.py": "an HTTP request's scheme: the session cookie is Secure over HTTPS",
    "console/session.py": "compares an HTTP request's Origin with its Host (CSRF)",
    "observability/http.py": "records an HTTP request's scheme on its span",
}


def test_nothing_else_dispatches_on_a_url_scheme() -> None:
    looks = re.compile(
        r"split\(\s*[\"']://"  # url.split("://")
        r"|\.scheme\b"  # urlsplit(url).scheme
        r"|startswith\(\s*\(?\s*[\"'][a-z+]+://"  # url.startswith("memory://")
        r"|[\"'][a-z]+://[\"']\s*(?:in|==)|==\s*[\"'][a-z]+://[\"']"  # url == "memory://"
    )
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative in _CHECKS_NOT_DISPATCH or relative.startswith("testing/"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if looks.search(line) and "register" not in line:
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []
