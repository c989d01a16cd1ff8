"""Test support shipped with eventfold: the backend conformance suite (a core
plus one mixin per store capability), given/when/then for deciders, the async
test runner plugin, and throwaway PostgreSQL and NATS servers (``pgserver``,
``natsserver``).

The conformance suite needs pytest and is imported on first use, so that the
servers (``eventfold dev postgres``) and ``given`` work without it."""

from __future__ import annotations

import typing

from eventfold.testing.given import Scenario, given

if typing.TYPE_CHECKING:
    from eventfold.testing.conformance import (
        ChainConformance,
        DCBConformance,
        InspectorConformance,
        LifecycleConformance,
        Opening,
        ReaderConformance,
        ReplicaReadsConformance,
        SnapshotConformance,
        SQLConformance,
        StoreConformance,
        StreamDataConformance,
        WriterConformance,
    )

_CONFORMANCE = (
    "ChainConformance",
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
)

__all__ = [
    "ChainConformance",
    "DCBConformance",
    "InspectorConformance",
    "LifecycleConformance",
    "Opening",
    "ReaderConformance",
    "ReplicaReadsConformance",
    "SQLConformance",
    "Scenario",
    "SnapshotConformance",
    "StoreConformance",
    "StreamDataConformance",
    "WriterConformance",
    "given",
]


def __getattr__(name: str) -> typing.Any:
    if name in _CONFORMANCE:
        from eventfold.testing import conformance

        value = getattr(conformance, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
