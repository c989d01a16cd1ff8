"""Two clocks: when an event was recorded, and when it happened.

``recorded_at`` is the store's: the moment the append committed, UTC,
non-decreasing along a stream and the log. It answers "what did we know
then?" and never changes.

``occurred_at`` is the application's, optional, carried in the event's
``Metadata``: the moment the thing happened in the domain (a loan made at
the desk on 1 March, typed in on 12 March). An event without one happened
when it was recorded. It answers "what was true then?", and a late entry or
a correction can move what was true in the past without rewriting anything.

As-of loads (``Repository.load``), time-travel builds (``build_as_of``), the
query API's ``as_of`` and ``eventfold at`` / ``build-as-of`` take either
clock: ``by="recorded"`` (the default) or ``by="occurred"``.

Times given as text (``--time``, ``?as_of=``, ``Eventfold-Occurred-At``) are
read by :func:`parse_moment`, the one rule for every door: ISO 8601; a date
alone means its start (00:00); a time without an offset is UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from eventfold.errors import InvalidArgument

Clock = Literal["recorded", "occurred"]
CLOCKS: tuple[Clock, ...] = ("recorded", "occurred")

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
"""No ``occurred_at`` before this (a default such as ``datetime.min`` is a bug)."""
MAX_AHEAD = timedelta(minutes=5)
"""How far ahead of the writer's clock an ``occurred_at`` may be (clock skew):
an event cannot have happened after it was written."""


def check_clock(by: object) -> Clock:
    """``by`` if it names a clock, else ``InvalidArgument``."""
    if by == "recorded":
        return "recorded"
    if by == "occurred":
        return "occurred"
    raise InvalidArgument(f"by must be 'recorded' or 'occurred', not {by!r}", argument="by")


def check_aware(value: datetime, argument: str) -> datetime:
    """``value`` if it has a time zone, else ``InvalidArgument``."""
    if not isinstance(value, datetime):
        raise InvalidArgument(f"{argument} must be a datetime, not {value!r}", argument=argument)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(
            f"{argument} must be timezone-aware (e.g. tzinfo=UTC), not {value.isoformat()}",
            argument=argument,
        )
    return value


def check_occurred_at(value: datetime) -> None:
    """The shape rules of a stored ``occurred_at``: timezone-aware, not
    before :data:`EARLIEST`. Checked whenever ``Metadata`` is made or read."""
    check_aware(value, "occurred_at")
    if value < EARLIEST:
        raise InvalidArgument(
            f"occurred_at {value.isoformat()} is before {EARLIEST.date()}", argument="occurred_at"
        )


def check_not_ahead(value: datetime, now: datetime | None = None) -> None:
    """A new event's ``occurred_at`` is not in the future (beyond
    :data:`MAX_AHEAD` of clock skew). Checked when an event is encoded."""
    now = datetime.now(UTC) if now is None else now
    if value > now + MAX_AHEAD:
        raise InvalidArgument(
            f"occurred_at {value.isoformat()} is in the future (now {now.isoformat()})",
            argument="occurred_at",
        )


def parse_moment(text: str, argument: str = "time") -> datetime:
    """A moment from ISO 8601 text, the same way everywhere: a date alone is
    its start (``2026-03-01`` is 00:00 that day), a time without an offset is
    UTC, ``Z`` or an offset is kept. Anything else is ``InvalidArgument``."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(
            f"{argument}: not an ISO 8601 date or time: {text!r}", argument=argument
        ) from None
    return as_utc_if_naive(moment)


def as_utc_if_naive(moment: datetime) -> datetime:
    """``moment``, read as UTC if it has no zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
