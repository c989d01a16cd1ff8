"""The shared conformance suite on the SQLite backend, at both durability levels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventfold.testing import StoreConformance


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'events.db'}"


class TestSQLiteStoreRelaxedSync(StoreConformance):
    """``synchronous=NORMAL``: the documented relaxed mode must keep every rule."""

    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'events.db'}"

    @pytest.fixture
    def store_options(self) -> dict[str, Any]:
        return {"synchronous": "NORMAL"}
