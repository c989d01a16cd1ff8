"""The pure domain: events and their registry, deciders, aggregates. No I/O."""

from eventfold.domain.aggregate import Aggregate
from eventfold.domain.decider import Decider
from eventfold.domain.events import Envelope, EventRegistry, EventType, Metadata

__all__ = ["Aggregate", "Decider", "Envelope", "EventRegistry", "EventType", "Metadata"]
