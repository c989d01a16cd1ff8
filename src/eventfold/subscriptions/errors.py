"""Errors of the query side: subscriptions, projections, read models, waits
(defined, with every other error, in ``eventfold.errors``)."""

from eventfold.errors import (
    ProjectionFailed,
    ProjectionNotReady,
    ProjectionSuperseded,
    ReadModelError,
    ReadModelTimeout,
    SubscriptionFailed,
    UnknownProjection,
)

__all__ = [
    "ProjectionFailed",
    "ProjectionNotReady",
    "ProjectionSuperseded",
    "ReadModelError",
    "ReadModelTimeout",
    "SubscriptionFailed",
    "UnknownProjection",
]
