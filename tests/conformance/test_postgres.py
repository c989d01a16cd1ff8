"""The conformance suite on the PostgreSQL backend: the core and the mixins
of every capability it declares."""

import pytest

from eventfold.testing import (
    ChainConformance,
    DCBConformance,
    InspectorConformance,
    SnapshotConformance,
    SQLConformance,
    StoreConformance,
    StreamDataConformance,
)


class TestPostgresStore(
    StoreConformance,
    SnapshotConformance,
    StreamDataConformance,
    ChainConformance,
    InspectorConformance,
    SQLConformance,
    DCBConformance,
):
    @pytest.fixture
    def store_url(self, pg_url: str) -> str:
        return pg_url
