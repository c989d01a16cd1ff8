"""The hash chain across the archive boundary.

Each cut with reason ``"archived"`` names the segment that holds the events
it removed. ``verify_archive`` reads every such segment and checks, for each
stream the cut removed events from, that the segment holds exactly the
versions between the stream's previous cut and this one, in position order,
chained from the previous cut's anchor (``GENESIS`` for version 1) to this
cut's anchor. With the live chain checked from that anchor on
(``eventfold.compliance.chain.verify``), a stream's whole history is
verified: an event edited, missing, added or moved inside an archive file,
or a segment swapped for another, is a finding. Findings use the
``Finding`` of ``eventfold.compliance.chain``.
"""

from __future__ import annotations

from collections.abc import Callable

from eventfold.archive.files import ArchiveRoot
from eventfold.archive.segment import ArchivedEvent
from eventfold.compliance.chain import Finding, Report
from eventfold.errors import ArchiveError
from eventfold.store.capabilities import StreamLifecycle
from eventfold.store.chain import GENESIS, link_hash
from eventfold.store.cuts import Cut


class _Expect:
    """What one cut says its segment holds for one stream."""

    def __init__(self, cut: Cut, first: int, prev: bytes) -> None:
        self.cut = cut
        self.first = first
        self.prev = prev
        self.events: list[ArchivedEvent] = []


async def _expectations(lifecycle: StreamLifecycle) -> dict[str, dict[str, _Expect]]:
    """Per segment, per stream: what its archived cut expects."""
    by_segment: dict[str, dict[str, _Expect]] = {}
    floors: dict[str, tuple[int, bytes]] = {}
    async for cut in lifecycle.read_cuts():
        first, prev = floors.get(cut.stream_id, (1, GENESIS))
        if cut.reason == "archived" and cut.before_version > first:
            by_segment.setdefault(cut.archive, {})[cut.stream_id] = _Expect(cut, first, prev)
        if cut.before_version >= first:
            floors[cut.stream_id] = (cut.before_version, cut.anchor)
    return by_segment


def _check(stream_id: str, expect: _Expect, report: Report) -> None:
    found = report.findings.append
    events, cut = expect.events, expect.cut
    versions = [e.version for e in events]
    for index in range(1, len(events)):
        if versions[index] < versions[index - 1]:
            found(Finding(stream_id, versions[index], "reordered", "out of place in the archive"))
            break
    events = sorted(events, key=lambda e: e.version)
    prev, want = expect.prev, expect.first
    for event in events:
        if event.version < want or event.version >= cut.before_version:
            found(Finding(stream_id, event.version, "duplicate", "archived twice, or still live"))
            continue
        if event.version > want:
            gap = f"{want}..{event.version - 1}"
            found(Finding(stream_id, want, "missing", f"versions {gap} are not in the archive"))
        digest = link_hash(
            prev,
            event.stream_id,
            event.version,
            event.event_id,
            event.type,
            event.schema_version,
            event.data,
            event.metadata,
            event.tags,
        )
        if digest.hex() != event.hash:
            found(
                Finding(
                    stream_id, event.version, "altered", "archived content does not match its hash"
                )
            )
        prev, want = bytes.fromhex(event.hash), event.version + 1
    if want < cut.before_version:
        gap = f"{want}..{cut.before_version - 1}"
        found(Finding(stream_id, want, "missing", f"versions {gap} are not in the archive"))
    elif prev != cut.anchor:
        found(
            Finding(
                stream_id,
                cut.before_version - 1,
                "rewritten",
                "the archived chain does not end at the cut's anchor",
            )
        )


async def verify_archive(
    lifecycle: StreamLifecycle,
    root: ArchiveRoot,
    *,
    key: bytes | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Check every archived part of every stream against its cut (and, with
    ``key``, each such cut's signature). A segment that cannot be read
    (missing, not an archive, an unsafe name) is a ``missing`` finding for
    each stream it should hold."""
    report = Report()
    for location, streams in sorted((await _expectations(lifecycle)).items()):
        try:
            last = 0
            for event in root.events(location):
                expect = streams.get(event.stream_id)
                if expect is None:
                    continue
                if event.position <= last:
                    report.findings.append(
                        Finding(
                            event.stream_id, event.version, "reordered", "out of position order"
                        )
                    )
                last = max(last, event.position)
                expect.events.append(event)
                report.events += 1
                if progress is not None:
                    progress(report.events)
        except ArchiveError as exc:
            for stream_id, expect in sorted(streams.items()):
                detail = f"segment unreadable: {exc.reason}"
                report.findings.append(Finding(stream_id, expect.first, "missing", detail))
            continue
        for stream_id, expect in sorted(streams.items()):
            report.streams += 1
            if key is not None and not expect.cut.check_signature(key):
                detail = "the cut's signature does not match"
                report.findings.append(
                    Finding(stream_id, expect.cut.before_version, "altered", detail)
                )
            _check(stream_id, expect, report)
    return report
