"""The SQLite backend: one file, WAL mode, group commit.

``eventfold.connect("sqlite:///path.db")`` opens one; see ``SQLiteStore``.
"""

from eventfold.store.sqlite.options import SQLiteOptions
from eventfold.store.sqlite.schema import SCHEMA_VERSION
from eventfold.store.sqlite.store import SQLiteStore

__all__ = ["SCHEMA_VERSION", "SQLiteOptions", "SQLiteStore"]
