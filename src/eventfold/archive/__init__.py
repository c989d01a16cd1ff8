"""Cold storage for removed events: segments of zstd-compressed JSON Lines
under an archive root (``files``, ``segment``), written before the store
truncates (``archiver``), read back on request (``reader``), and verified
across the boundary (``verify``). Needs the ``archive`` extra (zstandard).
See docs/lifecycle.md, "Archive"."""

from __future__ import annotations

from eventfold.archive.archiver import SEGMENT_EVENTS, Archiver, Move, Outcome, Selection
from eventfold.archive.files import ArchiveRoot
from eventfold.archive.reader import ArchivedStore
from eventfold.archive.segment import FORMAT, FORMAT_VERSION, ArchivedEvent, Header
from eventfold.archive.verify import verify_archive

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SEGMENT_EVENTS",
    "ArchiveRoot",
    "ArchivedEvent",
    "ArchivedStore",
    "Archiver",
    "Header",
    "Move",
    "Outcome",
    "Selection",
    "verify_archive",
]
