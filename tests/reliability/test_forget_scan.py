"""Crypto-shredding, checked the hard way: after forget (and a purging rebuild
of the read model), a byte scan of every file eventfold wrote (event store,
its WAL, the key table, snapshots, the read model and an export) finds
neither the forgotten subject's plaintext nor their key. Other subjects are
intact, and replays and projections still run."""

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import psycopg

import eventfold
from eventfold import Codec, Decider, Envelope, EventRegistry, Repository, SnapshotPolicy
from eventfold.compliance.chain import verify
from eventfold.compliance.export import export_jsonl
from eventfold.serialization.crypto import REDACTED, EncryptingStore
from eventfold.serialization.keys import KeyStore, SQLiteKeyStore
from eventfold.serialization.keys_postgres import PostgresKeyStore
from eventfold.subscriptions import Projection, ProjectionRunner, SQLiteReadModel, Tx
from eventfold.subscriptions.readmodel import ReadModel
from eventfold.subscriptions.readmodel_postgres import PostgresReadModel
from eventfold.testing.pgserver import PostgresServer

registry = EventRegistry()


@registry.register("CustomerRegistered", personal=("name", "email"), subject="customer")
class Registered(msgspec.Struct, frozen=True):
    customer: str
    name: str
    email: str


@registry.register("AddressChanged", personal=("address",), subject="customer")
class Moved(msgspec.Struct, frozen=True):
    customer: str
    address: str


class Profile(msgspec.Struct, frozen=True):
    name: str = ""
    email: str = ""
    address: str = ""


def evolve(state: Profile, event: object) -> Profile:
    if isinstance(event, Registered):
        return Profile(event.name, event.email, state.address)
    if isinstance(event, Moved):
        return msgspec.structs.replace(state, address=event.address)
    return state


profiles: Decider[object, object, Profile] = Decider(lambda c, s: [c], evolve, Profile)
codec = Codec(registry)

directory = Projection(
    "directory",
    version=1,
    tables={"people": "customer TEXT PRIMARY KEY, name TEXT, email TEXT, address TEXT"},
)


@directory.on(Registered)
def registered(tx: Tx, env: Envelope) -> None:
    e = env.event
    tx.execute(
        "INSERT INTO {people} (customer, name, email) VALUES (?, ?, ?)",
        (e.customer, e.name, e.email),
    )


@directory.on(Moved)
def moved(tx: Tx, env: Envelope) -> None:
    tx.execute(
        "UPDATE {people} SET address = ? WHERE customer = ?",
        (env.event.address, env.event.customer),
    )


SECRETS = [b"Ada Lovelace", b"ada@analytical.engine", b"12 St James's Square"]
KEPT = [b"Bo Peep", b"bo@sheep.farm"]


def checkpoint(path: Path) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


def scan(folder: Path, needles: list[bytes]) -> dict[str, list[bytes]]:
    """File name -> the needles found in it, for every file under ``folder``."""
    found: dict[str, list[bytes]] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits = [n for n in needles if n in data]
            if hits:
                found[path.name] = hits
    return found


async def forget_story(
    url: str,
    keys: KeyStore,
    reads: ReadModel,
    flush: Callable[[], Awaitable[None]],
    files: Path,
    store_file: str,
    reads_file: str,
    export: Path,
) -> bytes:
    """Write, project, forget, rebuild, replay, export; returns the key that was
    destroyed. ``flush`` puts everything written so far into ``files``."""
    async with eventfold.connect(url) as inner:
        store = EncryptingStore(inner, registry, keys)
        repo = Repository(store, profiles, codec, snapshots=SnapshotPolicy(1, Profile))
        await repo.handle(
            "customer-ada", Registered("ada", "Ada Lovelace", "ada@analytical.engine")
        )
        await repo.handle("customer-ada", Moved("ada", "12 St James's Square"))
        await repo.handle("customer-bo", Registered("bo", "Bo Peep", "bo@sheep.farm"))
        for _ in range(2):
            await repo.load("customer-ada")  # snapshots are written
            await repo.load("customer-bo")
        _, ada_key = await keys.key_for("ada")

        async with ProjectionRunner(store, reads, [directory], codec) as runner:
            await runner.wait_for(await store.head_position(), timeout=10)
            before = await runner.query("directory", "SELECT email FROM {people} ORDER BY 1")
            assert before.rows == [("ada@analytical.engine",), ("bo@sheep.farm",)]
            # Before forgetting, the plaintext is where it should be (the read
            # model) and the key in the store: flushed to the files, as a
            # long-running system would have them, not only in logs or buffers.
            await flush()
            # (PostgreSQL names its files by number: there, anywhere will do.)
            assert (reads_file in scan(files, SECRETS)) if reads_file else scan(files, SECRETS)
            assert (store_file in scan(files, [ada_key])) if store_file else scan(files, [ada_key])

            assert await store.forget("ada") == 1
            await runner.rebuild("directory", purge=True)
            after = await runner.query("directory", "SELECT name, email FROM {people} ORDER BY 1")
            assert after.rows == [("Bo Peep", "bo@sheep.farm"), (REDACTED, REDACTED)]

        ada = await repo.load("customer-ada")  # a replay still runs, redacted
        assert ada.state == Profile(REDACTED, REDACTED, REDACTED) and ada.version == 2
        assert (await repo.load("customer-bo")).state.email == "bo@sheep.farm"
        await export_jsonl(store, export)
        assert (await verify(inner)).clean  # shredding keeps the hash chains valid
        await keys.close()
    await flush()
    return ada_key


async def test_forget_on_sqlite_leaves_no_plaintext_and_no_key_in_any_file(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    async with SQLiteReadModel(tmp_path / "reads.db") as reads:

        async def flush() -> None:
            await reads.compact()
            checkpoint(tmp_path / "events.db")

        ada_key = await forget_story(
            url,
            SQLiteKeyStore.for_url(url),
            reads,
            flush,
            tmp_path,
            "events.db",
            "reads.db",
            tmp_path / "export.jsonl",
        )
    # The key id stays in each ciphertext (it names the key); the key is gone.
    leftovers = scan(tmp_path, [*SECRETS, ada_key])
    assert leftovers == {}, leftovers
    kept = scan(tmp_path, KEPT)
    assert "reads.db" in kept and "export.jsonl" in kept


async def test_forget_on_postgres_leaves_no_plaintext_and_no_key_in_table_files(
    dedicated_postgres: PostgresServer, tmp_path: Path
) -> None:
    """Every relation file of the cluster is scanned (base/, global/). The
    write-ahead log is not: docs/compliance.md says what it may still hold."""
    admin = dedicated_postgres.url()
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute("CREATE DATABASE reads")
    url = admin + "?schema=shop"
    files = dedicated_postgres.data_dir

    async def flush() -> None:
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            await conn.execute("CHECKPOINT")

    reads = PostgresReadModel(dedicated_postgres.url("reads"))
    async with reads:
        ada_key = await forget_story(
            url,
            PostgresKeyStore(url),
            reads,
            flush,
            files,
            "",
            "",
            tmp_path / "export.jsonl",
        )
    relations = [files / "base", files / "global"]
    leftovers = {k: v for d in relations for k, v in scan(d, [*SECRETS, ada_key]).items()}
    assert leftovers == {}, leftovers
    kept = {k for d in relations for k in scan(d, KEPT)}
    assert kept, "the other subject's read model rows are in the table files"
