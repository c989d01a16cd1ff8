"""The PostgreSQL backend: ``connect("postgresql://user@host/db")``."""

from eventfold.store.postgres.options import PostgresOptions
from eventfold.store.postgres.store import PostgresStore

__all__ = ["PostgresOptions", "PostgresStore"]
