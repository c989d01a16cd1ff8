"""Errors of the query side: subscriptions, projections, read models, waits.
Each derives from ``eventfold.errors.EventfoldError`` and names what it is about."""

from __future__ import annotations

from eventfold.errors import EventfoldError


class SubscriptionFailed(EventfoldError):
    """A handler failed on an event (after the retry policy ran out). The
    subscription stopped; its checkpoint is at the event before this one, so a
    restart resumes with this event."""

    def __init__(
        self,
        subscription: str,
        *,
        stream_id: str,
        version: int,
        position: int,
        type: str,
        cause: BaseException,
        attempts: int = 1,
    ) -> None:
        super().__init__(
            f"{self._what} {subscription!r} failed on {type} at stream {stream_id!r} "
            f"version {version} (position {position}) after {attempts} attempt(s): "
            f"{cause.__class__.__name__}: {cause}"
        )
        self.subscription = subscription
        self.stream_id = stream_id
        self.version = version
        self.position = position
        self.type = type
        self.cause = cause
        self.attempts = attempts

    _what = "subscription"


class ProjectionFailed(SubscriptionFailed):
    """A projection's handler failed on an event; its read model and checkpoint
    hold every event before that one, and nothing of it."""

    _what = "projection"

    @property
    def projection(self) -> str:
        return self.subscription


class ReadModelError(EventfoldError):
    """A read model database is unusable or was asked for something it cannot do."""

    def __init__(self, message: str, *, projection: str | None = None) -> None:
        super().__init__(message)
        self.projection = projection


class UnknownProjection(ReadModelError):
    """No projection of that name is declared (or stored in the read model)."""

    def __init__(self, projection: str, known: list[str] | None = None) -> None:
        listed = f" (known: {', '.join(known)})" if known else ""
        super().__init__(f"no projection named {projection!r}{listed}", projection=projection)


class ProjectionNotReady(ReadModelError):
    """The projection has no build that has caught up yet, so there is nothing to query."""

    def __init__(self, projection: str) -> None:
        super().__init__(
            f"projection {projection!r} has not caught up yet: nothing to query",
            projection=projection,
        )


class ProjectionSuperseded(ReadModelError):
    """The read model serves a newer version of this projection than the code
    running it: an old deployment must not write into it."""

    def __init__(self, projection: str, version: int, active_version: int) -> None:
        super().__init__(
            f"projection {projection!r}: this code has version {version}, the read model "
            f"already serves version {active_version}",
            projection=projection,
        )
        self.version = version
        self.active_version = active_version


class ReadModelTimeout(EventfoldError, TimeoutError):
    """A read model did not reach a position within the time allowed."""

    def __init__(self, projection: str, position: int, reached: int | None, timeout: float) -> None:
        got = "no build caught up yet" if reached is None else f"reached {reached}"
        super().__init__(
            f"projection {projection!r} did not reach position {position} within "
            f"{timeout:g}s ({got})"
        )
        self.projection = projection
        self.position = position
        self.reached = reached
        self.timeout = timeout
