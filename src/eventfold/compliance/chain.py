"""Tamper evidence: each stream's events form a hash chain.

Every event stores ``hash = sha256(message)`` where the message is the
previous event's hash and the event's stored fields (stream, version, id, type,
schema version, data and metadata exactly as stored: ciphertext included, so
crypto-shredding keeps the chain valid); the format is defined once, in
``eventfold.store.chain``, and a store offers its chain as a ``ChainReader``
(``eventfold.store.capabilities``). ``verify``
recomputes every chain and names each event modified, removed, inserted or
reordered; a signed checkpoint of chain heads also catches whole streams
truncated or deleted. A stream whose early events were removed on purpose
(``eventfold.store.cuts``) has its chain checked from its latest cut: version
``before_version``, previous hash ``anchor``; with a key, every cut's
signature is checked too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal, cast

import msgspec

from eventfold.errors import InvalidArgument
from eventfold.store.api import NO_STREAM_ID
from eventfold.store.capabilities import ChainLink as ChainLink
from eventfold.store.capabilities import ChainReader as ChainReader
from eventfold.store.capabilities import StreamLifecycle
from eventfold.store.chain import GENESIS as GENESIS
from eventfold.store.chain import link_hash as link_hash
from eventfold.store.chain import link_message as link_message
from eventfold.store.cuts import Cut

PROGRESS_EVERY = 1000
"""``verify`` reports its progress every this many events."""

Problem = Literal[
    "altered", "missing", "duplicate", "reordered", "truncated", "rewritten", "forged"
]
"""altered: the stored hash does not match the content (edited, or forged);
missing: versions absent (and no cut records their removal); duplicate: a
version twice; reordered: an intact event out of its place; truncated /
rewritten: against a checkpoint, a stream lost its tail or its history
differs; forged: a cut marker whose signature does not match the key."""


class Finding(msgspec.Struct, frozen=True):
    stream_id: str
    version: int
    problem: Problem
    detail: str


class Heads(msgspec.Struct, frozen=True):
    """Chain heads at a moment, optionally signed (HMAC-SHA256)."""

    taken_at: datetime
    heads: dict[str, tuple[int, str]]
    signature: str = ""

    def body(self) -> bytes:
        return msgspec.json.encode([self.taken_at, sorted(self.heads.items())])

    def signed(self, key: bytes) -> Heads:
        sig = hmac.new(key, self.body(), hashlib.sha256).hexdigest()
        return msgspec.structs.replace(self, signature=sig)

    def check_signature(self, key: bytes) -> bool:
        expected = hmac.new(key, self.body(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.signature)


class Report(msgspec.Struct):
    streams: int = 0
    events: int = 0
    findings: list[Finding] = []
    heads: dict[str, tuple[int, str]] = {}
    at_checkpoint: dict[str, tuple[int, str]] = {}

    @property
    def clean(self) -> bool:
        return not self.findings


def _recompute(link: ChainLink, prev: bytes, version: int) -> bytes:
    return link_hash(
        prev,
        link.stream_id,
        version,
        link.event_id,
        link.type,
        link.schema_version,
        link.data,
        link.metadata,
        link.tags,
    )


_REORDER_WINDOW = 8


def _check_loose(links: list[ChainLink], report: Report) -> None:
    """Events appended without a stream: each is a chain of its own."""
    for link in links:
        if _recompute(link, GENESIS, link.version) != link.hash or link.version != link.position:
            report.findings.append(
                Finding(NO_STREAM_ID, link.version, "altered", "content does not match its hash")
            )


def _check_stream(
    stream_id: str, links: list[ChainLink], report: Report, keep: int | None, cut: Cut | None
) -> None:
    if stream_id == NO_STREAM_ID:
        _check_loose(links, report)
        return
    prev, expected_version = (GENESIS, 1) if cut is None else (cut.anchor, cut.before_version)
    for index, link in enumerate(links):
        if cut is not None and link.version < cut.before_version:
            report.findings.append(
                Finding(
                    stream_id,
                    link.version,
                    "altered",
                    f"stored although a cut removed the versions before {cut.before_version}",
                )
            )
            continue
        if link.version > expected_version:
            gap = f"{expected_version}..{link.version - 1}"
            report.findings.append(
                Finding(stream_id, expected_version, "missing", f"versions {gap} are gone")
            )
        elif link.version < expected_version:
            report.findings.append(
                Finding(stream_id, link.version, "duplicate", "version stored twice")
            )
        elif _recompute(link, prev, link.version) != link.hash:
            # The content may be intact but out of place: find the predecessor
            # and version it does hash on. Moved itself (another version):
            # reordered. Same version, other predecessor: the predecessor is
            # what changed, and it is reported on its own. Nowhere: altered.
            nearby = links[max(0, index - _REORDER_WINDOW) : index + _REORDER_WINDOW]
            prevs = [GENESIS] + [other.hash for other in nearby if other is not link]
            versions = range(max(1, link.version - _REORDER_WINDOW), link.version + _REORDER_WINDOW)
            fits = [v for h in prevs for v in versions if _recompute(link, h, v) == link.hash]
            if not fits:
                report.findings.append(
                    Finding(stream_id, link.version, "altered", "content does not match its hash")
                )
            elif link.version not in fits:
                report.findings.append(
                    Finding(stream_id, link.version, "reordered", f"belongs at version {fits[0]}")
                )
        prev = link.hash
        expected_version = link.version + 1
    if links:
        report.heads[stream_id] = (links[-1].version, links[-1].hash.hex())
        if keep is not None:
            kept = [link.hash.hex() for link in links if link.version == keep]
            report.at_checkpoint[stream_id] = (
                max(link.version for link in links),
                kept[0] if kept else "",
            )


def latest_cuts(cuts: Sequence[Cut]) -> dict[str, Cut]:
    """Each stream's latest cut: its highest ``before_version``, the later
    made of equals (``cuts`` in the order they were made)."""
    latest: dict[str, Cut] = {}
    for cut in cuts:
        seen = latest.get(cut.stream_id)
        if seen is None or cut.before_version >= seen.before_version:
            latest[cut.stream_id] = cut
    return latest


async def verify(
    reader: ChainReader,
    *,
    checkpoint: Heads | None = None,
    key: bytes | None = None,
    progress: Callable[[int], None] | None = None,
    cuts: Sequence[Cut] | None = None,
) -> Report:
    """Check every chain; with ``checkpoint``, also that no stream it lists was
    truncated or deleted since (and, with ``key``, that it is authentic).
    A stream with cuts is checked from its latest one; with ``key``, a cut
    whose signature does not match is a finding. ``cuts`` are read from
    the reader if it declares ``StreamLifecycle`` and none are given.
    ``progress(events)`` is told how many events were checked, every
    ``PROGRESS_EVERY`` events and at the end."""
    if checkpoint is not None and key is not None and not checkpoint.check_signature(key):
        raise InvalidArgument("the checkpoint's signature does not match", argument="checkpoint")
    if cuts is None:
        declared: frozenset[type] = getattr(reader, "capabilities", frozenset())
        lifecycle = cast(StreamLifecycle, reader) if StreamLifecycle in declared else None
        cuts = [] if lifecycle is None else [cut async for cut in lifecycle.read_cuts()]
    latest = latest_cuts(cuts)
    report = Report()
    if key is not None:
        for cut in cuts:
            if not cut.check_signature(key):
                what = f"the {cut.reason} cut before version {cut.before_version}"
                detail = f"{what} is not signed by the key"
                report.findings.append(Finding(cut.stream_id, cut.before_version, "forged", detail))
    keep = {} if checkpoint is None else {s: v for s, (v, _) in checkpoint.heads.items()}
    current: str | None = None
    links: list[ChainLink] = []
    async for link in reader.read_chain():
        report.events += 1
        if progress is not None and report.events % PROGRESS_EVERY == 0:
            progress(report.events)
        if link.stream_id != current:
            if current is not None:
                _check_stream(current, links, report, keep.get(current), latest.get(current))
                report.streams += 1
            current, links = link.stream_id, []
        links.append(link)
    if current is not None:
        _check_stream(current, links, report, keep.get(current), latest.get(current))
        report.streams += 1
    if checkpoint is not None:
        _compare_heads(checkpoint, report, latest)
    if progress is not None:
        progress(report.events)
    return report


def _compare_heads(checkpoint: Heads, report: Report, cuts: dict[str, Cut]) -> None:
    for stream_id, (version, head) in sorted(checkpoint.heads.items()):
        cut = cuts.get(stream_id)
        if cut is not None and version < cut.before_version:
            # removed since, on record: only the anchor is left to compare
            if version == cut.before_version - 1 and cut.anchor.hex() != head:
                report.findings.append(
                    Finding(stream_id, version, "rewritten", "history differs from the checkpoint")
                )
            continue
        now, then = report.at_checkpoint.get(stream_id, (0, ""))
        if now < version:
            report.findings.append(
                Finding(stream_id, now + 1, "truncated", f"stream had {version} events, now {now}")
            )
        elif then != head:
            report.findings.append(
                Finding(stream_id, version, "rewritten", "history differs from the checkpoint")
            )


def take_heads(report: Report, key: bytes | None = None) -> Heads:
    """A checkpoint of the chain heads a clean report saw, signed if ``key``."""
    heads = Heads(datetime.now(UTC), dict(report.heads))
    return heads.signed(key) if key is not None else heads
