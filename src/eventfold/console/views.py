"""What the console's pages show, gathered from a running query service:
an event's correlation and causation chain as a tree, a stream's events
with their personal fields marked where forgotten, and how long each
projection needs to catch up."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec

from eventfold.serialization.crypto import REDACTED
from eventfold.store.api import EventReader, RecordedEvent

_object = msgspec.json.Decoder(dict[str, Any])


class EventRow(msgspec.Struct, frozen=True):
    """An event as a page shows it: its data and metadata decoded, and the
    fields forgotten (personal data whose subject's keys were destroyed)."""

    stream_id: str
    version: int
    position: int
    event_id: str
    type: str
    recorded_at: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    redacted: list[str]


def event_row(record: RecordedEvent) -> EventRow:
    data = _object.decode(record.data)
    return EventRow(
        stream_id=record.stream_id,
        version=record.version,
        position=record.position,
        event_id=str(record.event_id),
        type=record.type,
        recorded_at=record.recorded_at.isoformat(),
        data=data,
        metadata=_object.decode(record.metadata),
        redacted=sorted(k for k, v in data.items() if v == REDACTED),
    )


async def at_position(reader: EventReader, position: int) -> RecordedEvent | None:
    async for record in reader.read_all(from_position=position, limit=1):
        return record if record.position == position else None
    return None


class Node(msgspec.Struct):
    """One entry of a causation tree: an event, or the command that caused
    events (``event`` None, ``label`` naming it), and what it caused."""

    label: str
    event: EventRow | None = None
    children: list[Node] = []


def causation_tree(events: Sequence[EventRow]) -> list[Node]:
    """The events of one correlation as a forest: an event hangs under the
    event its ``causation_id`` names; the others under the command that
    caused them (by command id), in log order."""
    nodes = {e.event_id: Node(label=e.type, event=e, children=[]) for e in events}
    roots: list[Node] = []
    commands: dict[str, Node] = {}
    for event in sorted(events, key=lambda e: e.position):
        node = nodes[event.event_id]
        cause = event.metadata.get("causation_id")
        parent = nodes.get(cause) if isinstance(cause, str) else None
        if parent is not None and parent is not node:
            parent.children.append(node)
            continue
        extra = event.metadata.get("extra")
        command = extra.get("command") if isinstance(extra, dict) else None
        key = cause if isinstance(cause, str) else f"event {event.event_id}"
        holder = commands.get(key)
        if holder is None:
            what = f"command {command}" if isinstance(command, str) else "cause"
            holder = commands[key] = Node(label=f"{what} ({key})", children=[])
            roots.append(holder)
        holder.children.append(node)
    return roots


class Pace:
    """Projection positions seen at earlier page loads, to tell how fast
    each one moves and so how long it needs to catch up."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, int, float]] = {}

    def eta(self, name: str, position: int, behind: int) -> float | None:
        """Seconds until ``behind`` more events are applied, at the pace seen
        (0 when nothing is behind, None before a pace is known)."""
        now = time.monotonic()
        last = self._seen.get(name)
        rate = last[2] if last is not None else 0.0
        if last is not None and now > last[0] and position > last[1]:
            rate = (position - last[1]) / (now - last[0])
        self._seen[name] = (now, position, rate)
        if behind == 0:
            return 0.0
        return behind / rate if rate > 0 else None
