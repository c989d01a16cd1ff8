"""What the command side records: a command's outcome and its error."""

from __future__ import annotations

from typing import Literal

import msgspec

Status = Literal["pending", "succeeded", "rejected", "conflict", "invalid", "failed"]
"""``pending``: queued, not handled yet; ``rejected``: the decider refused it
(``CommandRejected``); ``conflict``: a concurrency conflict (wrong expected
version); ``invalid``: it does not fit its type or rules; ``failed``: an
unexpected error in the handler."""


class ErrorDetail(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a failed command was about, each field of one type: the stream,
    the version the command expected and the stream's actual version (a
    conflict), the argument that was refused (invalid)."""

    stream_id: str | None = None
    expected: int | None = None
    actual: int | None = None
    argument: str | None = None


class CommandError(msgspec.Struct, frozen=True):
    """Why a command did not succeed: the error's type name and message, and
    what it was about (stream, expected and actual version …)."""

    type: str
    message: str
    detail: ErrorDetail = ErrorDetail()


class CommandOutcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What became of a command. ``position`` is the read-your-writes token:
    a query that waits for it sees the command's effects (0: nothing written)."""

    command_id: str
    command: str
    status: Status
    stream_id: str | None = None
    version: int | None = None
    position: int | None = None
    events: list[str] = []
    error: CommandError | None = None
    idempotency_key: str | None = None
    accepted_at: str = ""
    completed_at: str | None = None

    @property
    def done(self) -> bool:
        return self.status != "pending"


class StoredOutcome(msgspec.Struct, frozen=True):
    """An outcome with the fingerprint of the command that produced it (to
    tell a retry from a reused key) and, for a queued command, the request."""

    outcome: CommandOutcome
    fingerprint: str = ""
    request: bytes | None = None
