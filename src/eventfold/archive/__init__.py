"""Cold storage for removed events: segments of zstd-compressed JSON Lines
under an archive root. Needs the ``archive`` extra (zstandard)."""

from __future__ import annotations

from eventfold.archive.files import ArchiveRoot
from eventfold.archive.segment import FORMAT, FORMAT_VERSION, ArchivedEvent, Header

__all__ = ["FORMAT", "FORMAT_VERSION", "ArchiveRoot", "ArchivedEvent", "Header"]
