"""Test support shipped with eventfold: the backend conformance suite and the
async test runner plugin."""

from eventfold.testing.conformance import StoreConformance

__all__ = ["StoreConformance"]
