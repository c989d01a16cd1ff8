"""Test support shipped with eventfold: the backend conformance suite (a core
plus one mixin per store capability), given/when/then for deciders, and the
async test runner plugin."""

from eventfold.testing.conformance import (
    ChainConformance,
    InspectorConformance,
    Opening,
    ReaderConformance,
    SnapshotConformance,
    SQLConformance,
    StoreConformance,
    StreamDataConformance,
    WriterConformance,
)
from eventfold.testing.given import Scenario, given

__all__ = [
    "ChainConformance",
    "InspectorConformance",
    "Opening",
    "ReaderConformance",
    "SQLConformance",
    "Scenario",
    "SnapshotConformance",
    "StoreConformance",
    "StreamDataConformance",
    "WriterConformance",
    "given",
]
