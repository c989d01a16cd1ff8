"""Audit rules: metadata every appended event must carry (actor, reason,
correlation and causation ids …), enforced around any store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from eventfold.errors import InvalidArgument
from eventfold.errors import MissingAuditMetadata as MissingAuditMetadata
from eventfold.store.api import NO_STREAM_ID, AppendResult, EventStore, NewEvent, StreamAppend
from eventfold.store.capabilities import (
    ChainReader,
    DCBStore,
    Inspector,
    ReplicaReads,
    SnapshotStore,
    SQLReader,
    StreamDataReader,
    StreamLifecycle,
)
from eventfold.store.dcb import AppendCondition, validate_append
from eventfold.store.wrapper import DelegatingStore

_KNOWN = ("correlation_id", "causation_id", "actor")


def metadata_keys(raw: bytes | str) -> dict[str, Any]:
    """Metadata as one flat mapping: the known keys and everything in ``extra``."""
    data: dict[str, Any] = msgspec.json.decode(raw, type=dict[str, Any])
    extra = data.pop("extra", None)
    return {**extra, **data} if isinstance(extra, dict) else data


class AuditingStore(DelegatingStore):
    """Rejects any append in which an event lacks one of ``required``
    (``actor``, ``correlation_id``, ``causation_id`` or a key of
    ``Metadata.extra`` such as ``reason``), before anything is written."""

    passes = frozenset(
        {
            SnapshotStore,
            StreamDataReader,
            ChainReader,
            Inspector,
            SQLReader,
            DCBStore,
            ReplicaReads,
            StreamLifecycle,
        }
    )

    def __init__(self, inner: EventStore, required: Sequence[str] = ("actor",)) -> None:
        super().__init__(inner)
        if isinstance(required, str) or not all(isinstance(k, str) and k for k in required):
            raise InvalidArgument(
                "required must be a sequence of metadata keys", argument="required"
            )
        self.required = tuple(required)

    def _check(self, stream_id: str, events: Sequence[NewEvent]) -> None:
        for event in events:
            present = metadata_keys(event.metadata)
            missing = [k for k in self.required if present.get(k) in (None, "")]
            if missing:
                raise MissingAuditMetadata(stream_id, event.type, missing)

    async def _write(self, appends: list[StreamAppend]) -> list[AppendResult]:
        for item in appends:
            self._check(item.stream_id, item.events)
        return await self.inner.append_many(appends)

    async def append_events(
        self, events: Sequence[NewEvent], condition: AppendCondition | None = None
    ) -> int:
        """Checked like a stream append, before the inner store's own checks."""
        self.check_open()
        checked, rule = validate_append(events, condition)
        self._check(NO_STREAM_ID, checked)
        return await super().append_events(checked, rule)
