"""The conformance suite on the memory backend: the core and the mixins of
the capabilities it declares."""

import pytest

from eventfold.testing import (
    ChainConformance,
    DCBConformance,
    InspectorConformance,
    LifecycleConformance,
    SnapshotConformance,
    StoreConformance,
)


class TestMemoryStore(
    StoreConformance,
    SnapshotConformance,
    ChainConformance,
    InspectorConformance,
    DCBConformance,
    LifecycleConformance,
):
    @pytest.fixture
    def store_url(self) -> str:
        return "memory://"
