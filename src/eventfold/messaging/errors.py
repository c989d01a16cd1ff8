"""Errors of the message bus, the relay and the consumer. All derive from
``EventfoldError`` and name the stream, sequence or subject involved."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from eventfold.errors import EventfoldError

if TYPE_CHECKING:
    from eventfold.messaging.api import PublishAck


class BusError(EventfoldError):
    """The message bus failed or refused a request."""


class BusUnavailable(BusError):
    """The bus cannot be reached (no connection, no stream leader)."""


class PublishFailed(BusError):
    """Publishing to ``stream`` failed. ``acked`` are the acknowledgements
    received for the leading messages before the failure (a prefix of the
    batch); whether later messages were stored is unknown."""

    def __init__(
        self,
        stream: str,
        reason: str,
        *,
        acked: Sequence[PublishAck] = (),
    ) -> None:
        super().__init__(f"publishing to stream {stream!r} failed: {reason}")
        self.stream = stream
        self.reason = reason
        self.acked = list(acked)


class PoisonMessage(BusError):
    """A message that can never be taken in (it is parked, not retried)."""

    def __init__(self, reason: str, *, subject: str | None = None, seq: int | None = None) -> None:
        where = f" ({subject} #{seq})" if subject is not None else ""
        super().__init__(f"poison message{where}: {reason}")
        self.reason = reason
        self.subject = subject
        self.seq = seq


class MirrorGap(BusError):
    """Messages the mirror still needs are no longer in the bus stream
    (removed by a retention limit, or the stream was purged): the read side
    must be rebuilt from the event store."""

    def __init__(self, stream: str, missing_from: int, first_available: int) -> None:
        super().__init__(
            f"stream {stream!r}: messages from sequence {missing_from} to "
            f"{first_available - 1} are gone; rebuild the mirror from the event store"
        )
        self.stream = stream
        self.missing_from = missing_from
        self.first_available = first_available
