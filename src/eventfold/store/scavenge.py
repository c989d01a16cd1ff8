"""Limits per category, applied on request: ``max_count`` keeps a stream's
last N events, ``max_age`` removes the events recorded before ``now -
max_age``. ``scavenge`` truncates each stream over its limits (reason
``scavenged``), one stream at a time: each truncation is atomic and
idempotent (``StreamLifecycle.truncate_stream``), so a scavenge killed at
any point is finished by running it again, and nothing is removed twice.
``eventfold scavenge`` is the command."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from eventfold.errors import ConfigurationError, InvalidArgument
from eventfold.store.api import EventStore
from eventfold.store.capabilities import Inspector, StreamLifecycle, require
from eventfold.store.checks import validate_stream_id

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_STREAMS = 10_000_000
"""Most streams of one category a scavenge looks at."""


def parse_duration(text: str, what: str = "max_age") -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d`` or ``4w`` as a time span."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None or int(match[1]) == 0:
        raise InvalidArgument(
            f"{what} must be a positive number of s, m, h, d or w (30d), not {text!r}",
            argument=what,
        )
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A category's limits: at most ``max_count`` events per stream, none
    older than ``max_age`` (``30d``); None: no such limit."""

    max_age: str | None = None
    max_count: int | None = None

    def checked(self, category: str) -> Limits:
        if self.max_age is None and self.max_count is None:
            raise InvalidArgument(
                f"category {category!r}: give max_age, max_count or both", argument="policy"
            )
        if self.max_age is not None:
            parse_duration(self.max_age)
        if self.max_count is not None and (isinstance(self.max_count, bool) or self.max_count < 0):
            raise InvalidArgument("max_count must be >= 0", argument="max_count")
        return self


Policy = dict[str, Limits]
"""Limits by category (the part of a stream id before the first ``-``)."""


def check_policy(policy: Policy) -> Policy:
    if not policy:
        raise InvalidArgument("the policy names no category", argument="policy")
    for category, limits in policy.items():
        validate_stream_id(category)
        limits.checked(category)
    return policy


def read_policy(path: Path) -> Policy:
    """A policy file: TOML, one table per category, e.g.
    ``[order]`` / ``max_age = "30d"`` / ``max_count = 1000``."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the policy {path}: {exc.strerror}") from None
    try:
        policy = msgspec.toml.decode(text, type=Policy)
    except msgspec.DecodeError as exc:  # a ValidationError is a DecodeError too
        raise ConfigurationError(f"{path} is not a scavenge policy: {exc}") from None
    return check_policy(policy)


class Removal(msgspec.Struct, frozen=True):
    """What a scavenge removes from one stream: versions ``first`` to
    ``before_version - 1``."""

    stream_id: str
    first: int
    before_version: int
    version: int

    @property
    def events(self) -> int:
        return self.before_version - self.first


async def _first_stored(store: EventStore, stream_id: str) -> int | None:
    async for record in store.read_stream(stream_id, limit=1):
        return record.version
    return None


async def _before(
    store: EventStore, stream_id: str, version: int, limits: Limits, now: datetime
) -> int:
    before = 1
    if limits.max_count is not None:
        before = max(before, version - limits.max_count + 1)
    if limits.max_age is not None:
        cutoff = now - parse_duration(limits.max_age)
        young = version + 1
        async for record in store.read_stream(stream_id, from_version=before):
            if record.recorded_at >= cutoff:
                young = record.version
                break
        before = max(before, young)
    return before


async def plan(store: EventStore, policy: Policy, now: datetime) -> AsyncIterator[Removal]:
    """The removal each stream over its category's limits needs, now."""
    check_policy(policy)
    inspector = require(store, Inspector)
    for category, limits in sorted(policy.items()):
        streams = await inspector.list_streams(category=category, limit=MAX_STREAMS)
        for info in sorted(streams, key=lambda s: s.stream_id):
            first = await _first_stored(store, info.stream_id)
            if first is None:
                continue
            before = await _before(store, info.stream_id, info.version, limits, now)
            if before > first:
                yield Removal(info.stream_id, first, before, info.version)


async def apply(
    store: EventStore,
    removals: list[Removal],
    *,
    key: bytes | None = None,
    progress: Callable[[Removal], None] | None = None,
) -> int:
    """Truncate each stream as planned (reason ``scavenged``, the cut signed
    with ``key``), telling ``progress`` after each; the number of cuts made
    (a stream truncated there already, by an earlier run, makes none)."""
    lifecycle = require(store, StreamLifecycle)
    made = 0
    for removal in removals:
        cut = await lifecycle.truncate_stream(
            removal.stream_id, removal.before_version, reason="scavenged", key=key
        )
        made += cut is not None
        if progress is not None:
            progress(removal)
    return made
