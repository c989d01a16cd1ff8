"""The archive root: a directory of segment files, and the only way in.

A location is a bare file name (``seg-...jsonl.zst``) inside the root. Any
other name (``..``, an absolute path, a separator, another suffix) is an
``UnsafeArchivePath`` before anything is opened, and a file is opened
without following a symbolic link, so nothing outside the root is ever read
or written. A segment is written to a temporary file, flushed to disk, and
renamed into place (then the directory is flushed): a crash leaves either
no segment or a whole one, never half of one.

The root's lock file (``.lock``) keeps reads back and truncations apart:
a read through the archive holds it shared, an archive run holds it
exclusively while it truncates, so a read never misses events a run moves
while it is under way (on one host: ``flock``).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO

from eventfold.archive.segment import SUFFIX, ArchivedEvent, Header, read_segment, write_segment
from eventfold.errors import ArchiveError, UnsafeArchivePath

_NAME = re.compile(r"seg-[0-9a-z-]{1,80}" + re.escape(SUFFIX))
_TEMP = ".tmp-"
_LOCK = ".lock"


class ArchiveRoot:
    """The directory that holds the segments (created if missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        root = Path(path)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveError(str(path), f"cannot create the archive root ({exc})") from None
        if not root.is_dir():
            raise ArchiveError(str(path), "the archive root is not a directory")
        self.path = root.resolve()

    def __repr__(self) -> str:
        return f"ArchiveRoot({str(self.path)!r})"

    def _file(self, location: str) -> Path:
        if not isinstance(location, str) or not _NAME.fullmatch(location):
            raise UnsafeArchivePath(str(location), "not the name of a segment in the archive root")
        return self.path / location

    @asynccontextmanager
    async def locked(self, *, exclusive: bool) -> AsyncIterator[None]:
        """Hold the root's lock, shared (reads) or exclusive (truncations),
        waiting for it in a thread; released when the block ends (or the
        process dies)."""
        try:
            fd = os.open(self.path / _LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise ArchiveError(str(self.path), f"cannot open the lock file ({exc})") from None
        try:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            await asyncio.to_thread(fcntl.flock, fd, mode)
            yield
        finally:
            os.close(fd)

    def new_location(self, first_position: int) -> str:
        """A fresh segment name, ordered by the first position it holds."""
        return f"seg-{first_position:012d}-{uuid.uuid4().hex[:12]}{SUFFIX}"

    def locations(self) -> list[str]:
        """The segment names in the root, in order (temporary files and
        anything else are not segments)."""
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            raise ArchiveError(str(self.path), f"cannot list the archive root ({exc})") from None
        return sorted(name for name in names if _NAME.fullmatch(name))

    def remove_temporary(self) -> int:
        """Delete temporary files a crashed write left behind; how many."""
        removed = 0
        for name in os.listdir(self.path):
            if name.startswith(_TEMP):
                (self.path / name).unlink(missing_ok=True)
                removed += 1
        return removed

    def write(self, location: str, header: Header, events: list[ArchivedEvent]) -> None:
        """Write the segment durably under ``location`` (which must not exist)."""
        target = self._file(location)
        temp = self.path / f"{_TEMP}{location}"
        try:
            with open(temp, "xb") as out:
                write_segment(out, header, events)
                out.flush()
                os.fsync(out.fileno())
            if target.exists() or target.is_symlink():
                raise UnsafeArchivePath(location, "a segment of that name exists already")
            os.rename(temp, target)
            directory = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise ArchiveError(location, f"cannot write the segment ({exc})") from None
        finally:
            temp.unlink(missing_ok=True)

    @contextmanager
    def open(self, location: str) -> Iterator[IO[bytes]]:
        """The segment file, opened for reading without following a link."""
        path = self._file(location)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise ArchiveError(location, "no such segment in the archive root") from None
        except OSError as exc:
            if os.path.islink(path):
                raise UnsafeArchivePath(location, "a symbolic link, not a segment") from None
            raise ArchiveError(location, f"cannot open the segment ({exc})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafeArchivePath(location, "not a regular file")
        with os.fdopen(fd, "rb") as source:
            yield source

    def header(self, location: str) -> Header:
        with self.open(location) as source:
            return read_segment(source, location)[0]

    def events(self, location: str) -> Iterator[ArchivedEvent]:
        """The segment's events in file order (position order), streamed."""
        with self.open(location) as source:
            yield from read_segment(source, location)[1]
