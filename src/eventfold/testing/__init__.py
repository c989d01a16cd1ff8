"""Test support shipped with eventfold: the backend conformance suite,
given/when/then for deciders, and the async test runner plugin."""

from eventfold.testing.conformance import StoreConformance
from eventfold.testing.given import Scenario, given

__all__ = ["Scenario", "StoreConformance", "given"]
