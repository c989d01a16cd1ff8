"""The conformance suite on the PostgreSQL backend: the core and the mixins
of every capability it declares; on a store alone, and on a store whose
routed reads go to a hot standby."""

import pytest

from eventfold.testing import (
    ChainConformance,
    DCBConformance,
    InspectorConformance,
    LifecycleConformance,
    ReplicaReadsConformance,
    SnapshotConformance,
    SQLConformance,
    StoreConformance,
    StreamDataConformance,
)
from tests.conftest import Replication


class TestPostgresStore(
    StoreConformance,
    SnapshotConformance,
    StreamDataConformance,
    ChainConformance,
    InspectorConformance,
    SQLConformance,
    DCBConformance,
    ReplicaReadsConformance,
    LifecycleConformance,
):
    @pytest.fixture
    def store_url(self, pg_url: str) -> str:
        return pg_url


class TestPostgresStoreWithAReplica(ReplicaReadsConformance):
    """The routed reads again, on a store with a real hot standby."""

    @pytest.fixture
    def store_url(self, replication: Replication, pg_schema: str) -> str:
        return replication.store_url(pg_schema)

    # Checked once, by TestPostgresStore: this class runs one mixin again.
    test_declared_capabilities_match_the_mixins = None  # type: ignore[assignment]
