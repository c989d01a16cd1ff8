"""Opening the store a command works on, with its key store when personal data
is to be decrypted."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Protocol, cast

import typer

from eventfold.cli.common import load_object
from eventfold.domain.events import EventRegistry
from eventfold.security.secrets import hex_key, read_secret
from eventfold.serialization.crypto import EncryptingStore
from eventfold.serialization.keys import KeyStore, open_key_store
from eventfold.store.api import EventReader, EventStore
from eventfold.store.capabilities import Capable
from eventfold.store.routing import ROUTES, Route, check_route, route_reads
from eventfold.store.url import connect

StoreOption = Annotated[
    str, typer.Option("--store", envvar="EVENTFOLD_STORE", help="event store URL")
]
MaybeStoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="EVENTFOLD_STORE",
        help="event store URL (or --tenant)",
        show_default=False,
    ),
]
RegistryOption = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="module:attribute naming the EventRegistry; personal fields are then "
        "decrypted with the store's keys (forgotten ones read as \\[redacted])",
    ),
]
MasterKeyOption = Annotated[
    str,
    typer.Option(
        "--master-key-env",
        help="environment variable holding the hex master key that wraps subject keys",
    ),
]


ReadFromOption = Annotated[
    str,
    typer.Option(
        "--read-from",
        envvar="EVENTFOLD_READ_FROM",
        help="replica: read a replica of the store where it has some (falling back to the "
        "primary); primary: read the primary",
    ),
]


class Reader(EventReader, Capable, Protocol):
    """What inspection reads through: a store, or its view on a route."""


def read_route(value: str) -> Route:
    if value not in ROUTES:
        raise typer.BadParameter(f"one of {', '.join(ROUTES)}", param_hint="--read-from")
    return check_route(value)


def master_key(env: str) -> bytes | None:
    return hex_key(read_secret(env=env), env)


def load_registry(registry: str | None) -> EventRegistry | None:
    """The ``--registry`` named as module:attribute, checked to be an EventRegistry."""
    events = None if registry is None else load_object(registry, "--registry")
    if events is not None and not isinstance(events, EventRegistry):
        raise typer.BadParameter(f"{registry} is not an EventRegistry", param_hint="--registry")
    return events


def keys_for(url: str, env: str = "EVENTFOLD_MASTER_KEY") -> KeyStore:
    return open_key_store(url, master_key=master_key(env))


@contextlib.asynccontextmanager
async def open_store(
    url: str, registry: str | None = None, key_env: str = "EVENTFOLD_MASTER_KEY"
) -> AsyncIterator[EventStore]:
    """The existing store at ``url`` (a missing one raises StoreNotFound and
    is not created: these commands only read it); with ``registry``, wrapped
    so that personal fields are decrypted."""
    events = load_registry(registry)
    async with connect(url, create=False) as store:
        if events is None:
            yield store
            return
        wrapped = EncryptingStore(store, events, keys_for(url, key_env))
        try:
            yield wrapped
        finally:
            await wrapped.keys.close()


@contextlib.asynccontextmanager
async def open_reader(
    url: str, registry: str | None = None, *, read_from: str = "replica"
) -> AsyncIterator[Reader]:
    """The store at ``url`` for reading only, on the ``--read-from`` route
    (its replicas where it has some, else the store itself)."""
    route = read_route(read_from)
    async with open_store(url, registry) as store:
        yield cast(Reader, route_reads(store, route))
