"""The PostgreSQL key store opened by a role that may only use its table:
no DDL (and no CREATE privilege) is needed once the table is there."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from eventfold.errors import StoreError
from eventfold.serialization.keys_postgres import PostgresKeyStore


def _as(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


async def test_a_role_that_may_only_use_the_key_table_opens_the_key_store(
    postgres_url: str, pg_url: str, pg_schema: str
) -> None:
    owner = PostgresKeyStore(pg_url)
    key_id, key = await owner.key_for("ada")
    await owner.close()
    role = f"keys_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(pg_schema), sql.Identifier(role)
            )
        )
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT, DELETE ON {} TO {}").format(
                sql.Identifier(pg_schema, "subject_keys"), sql.Identifier(role)
            )
        )
    try:
        await _use_as(pg_url, pg_schema, role, key_id, key)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def _use_as(pg_url: str, pg_schema: str, role: str, key_id: str, key: bytes) -> None:
    limited = PostgresKeyStore(_as(pg_url, role))
    try:
        assert await limited.key(key_id) == key
        assert (await limited.key_for("ada")) == (key_id, key)
        grace = await limited.key_for("grace")
        assert await limited.key(grace[0]) == grace[1]
    finally:
        await limited.close()
    # Where the table is not there, such a role gets a typed error, not a traceback.
    elsewhere = PostgresKeyStore(_as(pg_url, role).replace(pg_schema, f"{pg_schema}_none"))
    with pytest.raises(StoreError):
        await elsewhere.key_for("ada")
    await elsewhere.close()
