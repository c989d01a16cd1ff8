"""The conformance suite on the SQLite backend, at both durability levels:
the core and the mixins of every capability it declares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventfold.testing import (
    ChainConformance,
    DCBConformance,
    InspectorConformance,
    LifecycleConformance,
    SnapshotConformance,
    SQLConformance,
    StoreConformance,
    StreamDataConformance,
)


class SQLiteConformance(
    StoreConformance,
    SnapshotConformance,
    StreamDataConformance,
    ChainConformance,
    InspectorConformance,
    SQLConformance,
    DCBConformance,
    LifecycleConformance,
):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'events.db'}"


class TestSQLiteStore(SQLiteConformance):
    pass


class TestSQLiteStoreRelaxedSync(SQLiteConformance):
    """``synchronous=NORMAL``: the documented relaxed mode must keep every rule."""

    @pytest.fixture
    def store_options(self) -> dict[str, Any]:
        return {"synchronous": "NORMAL"}
