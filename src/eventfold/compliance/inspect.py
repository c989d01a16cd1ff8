"""Looking into a store: streams and categories with counts, statistics, and
read-only SQL over the event tables. The capabilities (``Inspector``,
``SQLReader``) and their records are defined in
``eventfold.store.capabilities``; this module keeps their earlier import path."""

from eventfold.errors import ReadOnlyViolation
from eventfold.store.capabilities import (
    CategoryInfo,
    Inspector,
    SQLReader,
    SQLResult,
    StoreStats,
    StreamInfo,
)

__all__ = [
    "CategoryInfo",
    "Inspector",
    "ReadOnlyViolation",
    "SQLReader",
    "SQLResult",
    "StoreStats",
    "StreamInfo",
]
