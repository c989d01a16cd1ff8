"""Test support shipped with eventfold: the backend conformance suite,
given/when/then for deciders, the async test runner plugin, and throwaway
PostgreSQL and NATS servers (``pgserver``, ``natsserver``).

The conformance suite needs pytest and is imported on first use, so that the
servers (``eventfold dev postgres``) and ``given`` work without it."""

from __future__ import annotations

import typing

from eventfold.testing.given import Scenario, given

if typing.TYPE_CHECKING:
    from eventfold.testing.conformance import StoreConformance

__all__ = ["Scenario", "StoreConformance", "given"]


def __getattr__(name: str) -> typing.Any:
    if name == "StoreConformance":
        from eventfold.testing.conformance import StoreConformance

        globals()[name] = StoreConformance
        return StoreConformance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
