"""Cut markers: what a stream's removal leaves behind, defined once.

Every removal of events (a truncation, a soft or hard delete, an archive's
hand-over, a scavenge) records a ``Cut`` in the same transaction: the stream,
the first version that stays (``before_version``: versions ``1 ..
before_version - 1`` are gone), the chain hash of the last removed event
(``anchor``; ``GENESIS`` if none was), why, when, where the removed events
went (``archive``, ``""`` if nowhere) and an HMAC-SHA256 signature over the
marker's canonical body (``""`` if no key was given). ``verify``
(``eventfold.compliance.chain``) starts the stream's chain at the latest
cut: version ``before_version``, previous hash ``anchor``.

A stream's state after its cuts (``StreamCut``): its events below the latest
cut's ``before_version`` are gone, its version goes on from where it was (a
soft-deleted stream at version 5 takes version 6 next), and a ``tombstoned``
one is never written again.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from eventfold.errors import InvalidArgument
from eventfold.store.checks import validate_stream_id

CutReason = Literal["truncated", "deleted", "tombstoned", "archived", "scavenged"]
"""truncated / archived / scavenged: the events before a version went (by hand,
to an archive, by a category's limits); deleted: every event went, and the
stream may be written again; tombstoned: every event went, for good."""

TRUNCATE_REASONS: frozenset[str] = frozenset({"truncated", "archived", "scavenged"})
"""The reasons a truncation may give (a deletion's are ``deleted`` and ``tombstoned``)."""

MAX_ARCHIVE = 1000
"""Longest archive location a cut records (characters)."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    """``at`` as UTC microseconds since the Unix epoch (how a cut's time is
    signed, and stored by SQLite)."""
    return (at.astimezone(UTC) - _EPOCH) // _MICROSECOND


class Cut(msgspec.Struct, frozen=True):
    """A removal from one stream, as recorded beside the events."""

    stream_id: str
    before_version: int
    anchor: bytes
    reason: CutReason
    at: datetime
    archive: str = ""
    signature: str = ""

    def body(self) -> bytes:
        """The canonical bytes the signature covers: every field but the
        signature, the anchor in hex and the time in UTC microseconds."""
        return msgspec.json.encode(
            [
                self.stream_id,
                self.before_version,
                self.anchor.hex(),
                self.reason,
                micros(self.at),
                self.archive,
            ]
        )

    def signed(self, key: bytes | None) -> Cut:
        """This cut signed with ``key`` (unsigned if None)."""
        if key is None:
            return self
        sig = hmac.new(key, self.body(), hashlib.sha256).hexdigest()
        return msgspec.structs.replace(self, signature=sig)

    def check_signature(self, key: bytes) -> bool:
        expected = hmac.new(key, self.body(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.signature)

    @property
    def tombstone(self) -> bool:
        return self.reason == "tombstoned"


def cut_time() -> datetime:
    """A cut's time: UTC, to the microsecond (what every backend stores)."""
    return datetime.now(UTC)


def check_truncate(
    stream_id: str, before_version: object, reason: object, archive: object
) -> tuple[str, int, CutReason, str]:
    """The arguments of a truncation, checked before anything is read."""
    validate_stream_id(stream_id)
    if isinstance(before_version, bool) or not isinstance(before_version, int):
        raise InvalidArgument("before_version must be an int", argument="before_version")
    if before_version < 1:
        raise InvalidArgument("before_version must be >= 1", argument="before_version")
    if reason not in TRUNCATE_REASONS:
        known = ", ".join(sorted(TRUNCATE_REASONS))
        raise InvalidArgument(f"reason must be one of {known}", argument="reason")
    if not isinstance(archive, str) or len(archive) > MAX_ARCHIVE or "\x00" in archive:
        raise InvalidArgument(
            f"archive must be a string of at most {MAX_ARCHIVE} characters without NUL",
            argument="archive",
        )
    return stream_id, before_version, reason, archive  # type: ignore[return-value]


def check_key(key: object) -> bytes | None:
    if key is not None and (not isinstance(key, bytes) or not key):
        raise InvalidArgument("key must be non-empty bytes or None", argument="key")
    return key


def plan_truncate(
    stream_id: str, before_version: int, version: int, floor: int, tombstoned: bool
) -> bool:
    """Whether a truncation before ``before_version`` removes anything from
    a stream at ``version`` whose events before ``floor`` are already gone:
    False if they are (a repeated truncation is a no-op); InvalidArgument
    if it would cut past the stream's end."""
    if before_version > version + 1:
        raise InvalidArgument(
            f"stream {stream_id!r} is at version {version}: cannot truncate before "
            f"version {before_version} (at most {version + 1}, which removes every event)",
            argument="before_version",
        )
    return not tombstoned and before_version > floor
