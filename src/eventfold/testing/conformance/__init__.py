"""The contract every backend must pass, shipped so that a third-party
backend can prove itself by running it.

The suite is a core plus one mixin per optional capability
(``eventfold.store.capabilities``):

- ``StoreConformance``: the core, reading (``ReaderConformance``) and
  writing (``WriterConformance``) together;
- ``SnapshotConformance``, ``StreamDataConformance``, ``ChainConformance``,
  ``InspectorConformance``, ``SQLConformance``, ``DCBConformance``,
  ``ReplicaReadsConformance``: one per capability.

A backend's test class composes the core with the mixins of the capabilities
it declares, and provides a ``store_url`` fixture naming a fresh, empty store
for each test (and optionally ``store_options``)::

    class TestMyStore(StoreConformance, SnapshotConformance, ChainConformance):
        @pytest.fixture
        def store_url(self) -> str:
            return "mine://..."

``test_declared_capabilities_match_the_mixins`` fails unless the mixins are
exactly the store's declared ``capabilities``. Something that only reads the
log (a copy of it, such as the bus mirror) runs ``ReaderConformance``, with an
``open_store`` fixture that fills it (see ``Opening``). Async tests need
``-p eventfold.testing.plugin``.
"""

from eventfold.testing.conformance.core import StoreConformance
from eventfold.testing.conformance.dcb import DCBConformance, tagged, violations
from eventfold.testing.conformance.lifecycle import LifecycleConformance
from eventfold.testing.conformance.mixins import (
    ChainConformance,
    InspectorConformance,
    SnapshotConformance,
    SQLConformance,
    StreamDataConformance,
)
from eventfold.testing.conformance.reader import ReaderConformance
from eventfold.testing.conformance.replicas import ReplicaReadsConformance
from eventfold.testing.conformance.support import (
    Conformance,
    Opening,
    collect,
    new_event,
    numbered,
    numbers,
)
from eventfold.testing.conformance.writer import WriterConformance

__all__ = [
    "ChainConformance",
    "Conformance",
    "DCBConformance",
    "InspectorConformance",
    "LifecycleConformance",
    "Opening",
    "ReaderConformance",
    "ReplicaReadsConformance",
    "SQLConformance",
    "SnapshotConformance",
    "StoreConformance",
    "StreamDataConformance",
    "WriterConformance",
    "collect",
    "new_event",
    "numbered",
    "numbers",
    "tagged",
    "violations",
]
