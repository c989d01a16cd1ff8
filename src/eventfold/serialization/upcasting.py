"""Bring a stored payload written by older code up to the registered class."""

from __future__ import annotations

from typing import Any

import msgspec

from eventfold.domain.events import EventRegistry, EventType
from eventfold.errors import SerializationError
from eventfold.store.api import JsonText
from eventfold.store.checks import NOT_JSON


def upcast(registry: EventRegistry, entry: EventType, stored_version: int, raw: JsonText) -> Any:
    """Decode ``raw`` (schema ``stored_version``) into ``entry.cls`` by running the
    registered upcasters ``v -> v+1`` up to the current version."""
    if stored_version > entry.version:
        raise SerializationError(
            f"{entry.name} schema version {stored_version} is newer than the registered "
            f"version {entry.version}",
            event_type=entry.name,
        )
    try:
        data: dict[str, Any] = msgspec.json.decode(raw, type=dict[str, Any])
    except NOT_JSON as exc:
        raise SerializationError(
            f"{entry.name}: stored payload is not JSON: {exc}", event_type=entry.name
        ) from None
    for version in range(stored_version, entry.version):
        step = registry.upcaster_for(entry.name, version)
        if step is None:
            raise SerializationError(
                f"{entry.name}: no upcaster from schema version {version} to {version + 1}",
                event_type=entry.name,
            )
        data = step(data)
    try:
        return msgspec.convert(data, entry.cls)
    except msgspec.ValidationError as exc:
        raise SerializationError(
            f"{entry.name}: upcasted payload does not fit the class: {exc}", event_type=entry.name
        ) from None
