"""Opening the store a command works on, with its key store when personal data
is to be decrypted."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import typer

from eventfold.cli.common import load_object
from eventfold.domain.events import EventRegistry
from eventfold.security.secrets import hex_key, read_secret
from eventfold.serialization.crypto import EncryptingStore
from eventfold.serialization.keys import KeyStore, open_key_store
from eventfold.store.api import EventStore
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


def master_key(env: str) -> bytes | None:
    return hex_key(read_secret(env=env), env)


def keys_for(url: str, env: str = "EVENTFOLD_MASTER_KEY") -> KeyStore:
    return open_key_store(url, master_key=master_key(env))


@contextlib.asynccontextmanager
async def open_store(
    url: str, registry: str | None = None, key_env: str = "EVENTFOLD_MASTER_KEY"
) -> AsyncIterator[EventStore]:
    """The existing store at ``url`` (a missing one raises StoreNotFound and
    is not created: these commands only read it); with ``registry``, wrapped
    so that personal fields are decrypted."""
    events = None if registry is None else load_object(registry, "--registry")
    if events is not None and not isinstance(events, EventRegistry):
        raise typer.BadParameter(f"{registry} is not an EventRegistry", param_hint="--registry")
    async with connect(url, create=False) as store:
        if events is None:
            yield store
            return
        wrapped = EncryptingStore(store, events, keys_for(url, key_env))
        try:
            yield wrapped
        finally:
            await wrapped.keys.close()
