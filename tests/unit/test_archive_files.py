"""The archive file format and root under hostile input: names that leave the
root, symbolic links, files that are not archives (garbage, truncated zstd,
corrupt checksums, another header or format version, bad records) all get
typed errors, and nothing outside the root is read."""

from __future__ import annotations

import io
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import zstandard

from eventfold.archive.files import ArchiveRoot
from eventfold.archive.segment import (
    FORMAT,
    FORMAT_VERSION,
    ArchivedEvent,
    Header,
    StreamRange,
    write_segment,
)
from eventfold.errors import ArchiveError, NotAnArchive, UnsafeArchivePath

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DIGEST = "ab" * 32


def _event(version: int) -> ArchivedEvent:
    return ArchivedEvent(
        stream_id="order-1",
        version=version,
        position=version * 2,
        event_id=uuid.uuid4(),
        type="Placed",
        schema_version=1,
        data=f'{{"n": {version}, "name": "\\u00e9"}}',
        metadata="{}",
        recorded_at=NOW,
        hash=DIGEST,
        tags=("a", "b"),
    )


def _header(events: int = 3) -> Header:
    return Header(
        FORMAT, FORMAT_VERSION, NOW, events, {"order-1": StreamRange(1, 3, "00" * 32, DIGEST)}
    )


def _compressed(*lines: bytes) -> bytes:
    out = io.BytesIO()
    with zstandard.ZstdCompressor(write_checksum=True).stream_writer(out, closefd=False) as w:
        for line in lines:
            w.write(line + b"\n")
    return out.getvalue()


@pytest.fixture
def root(tmp_path: Path) -> ArchiveRoot:
    return ArchiveRoot(tmp_path / "archive")


def test_a_segment_reads_back_exactly_as_written(root: ArchiveRoot) -> None:
    events = [_event(v) for v in (1, 2, 3)]
    location = root.new_location(2)
    root.write(location, _header(), events)
    assert root.locations() == [location]
    assert root.header(location) == _header()
    assert list(root.events(location)) == events
    assert not [n for n in os.listdir(root.path) if n != location]  # no temporary left


def test_a_segment_is_never_overwritten(root: ArchiveRoot) -> None:
    location = root.new_location(1)
    root.write(location, _header(), [_event(v) for v in (1, 2, 3)])
    with pytest.raises(ArchiveError):
        root.write(location, _header(0), [])
    assert len(list(root.events(location))) == 3


@pytest.mark.parametrize(
    "location",
    [
        "../outside.jsonl.zst",
        "..",
        "/etc/passwd",
        "sub/seg-1.jsonl.zst",
        "seg-1.jsonl.zst/../../x",
        "seg-..jsonl.zst",
        "seg-1.txt",
        "",
        "seg-1.jsonl.zst\x00",
    ],
)
def test_names_that_leave_the_root_are_refused_before_opening(
    root: ArchiveRoot, location: str
) -> None:
    with pytest.raises(UnsafeArchivePath):
        list(root.events(location))
    with pytest.raises(UnsafeArchivePath):
        root.write(location, _header(0), [])


def test_a_symbolic_link_is_refused_and_its_target_not_read(
    root: ArchiveRoot, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.jsonl.zst"
    outside.write_bytes(_compressed(msgspec.json.encode(_header(0))))
    link = root.path / "seg-000000000001-aaaa.jsonl.zst"
    link.symlink_to(outside)
    with pytest.raises(UnsafeArchivePath):
        root.header(link.name)
    # a link to a directory, and a directory, are not segments either
    (root.path / "seg-000000000002-bbbb.jsonl.zst").symlink_to(tmp_path)
    os.mkdir(root.path / "seg-000000000003-cccc.jsonl.zst")
    for name in ("seg-000000000002-bbbb.jsonl.zst", "seg-000000000003-cccc.jsonl.zst"):
        with pytest.raises(UnsafeArchivePath):
            root.header(name)


def _plant(root: ArchiveRoot, content: bytes) -> str:
    location = root.new_location(1)
    (root.path / location).write_bytes(content)
    return location


GOOD = [msgspec.json.encode(_header(1)), msgspec.json.encode(_event(1))]


def _header_line(**changes: object) -> bytes:
    return msgspec.json.encode(msgspec.structs.replace(_header(1), **changes))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"not zstd at all, just text\n", "not a zstd archive"),
        (os.urandom(4096), "not a zstd archive"),
        (_compressed(*GOOD)[:-7], "truncated"),
        (_compressed(*GOOD) + b"junk", "after the end"),
        (_compressed(*GOOD) + _compressed(*GOOD), "after the end"),
        (_compressed(b'{"format": "parquet", "version": 1}'), "no archive header"),
        (
            _compressed(_header_line(format="other"), GOOD[1]),
            "format 'other'",
        ),
        (
            _compressed(_header_line(version=2), GOOD[1]),
            "format version 2",
        ),
        (_compressed(GOOD[0], b'{"stream_id": 1}'), "line 2"),
        (_compressed(GOOD[0], GOOD[1].replace(DIGEST.encode(), b"zz" * 32)), "line 2"),
        (_compressed(GOOD[0]), "holds 0 events"),
        (_compressed(GOOD[0], GOOD[1], GOOD[1]), "holds 2 events"),
        (_compressed(b"[1, 2, 3]"), "no archive header"),
    ],
)
def test_a_file_that_is_not_an_archive_is_a_typed_error(
    root: ArchiveRoot, content: bytes, reason: str
) -> None:
    location = _plant(root, content)
    with pytest.raises(NotAnArchive) as caught:
        list(root.events(location))
    assert reason in caught.value.reason
    assert caught.value.location == location


def test_a_corrupt_byte_fails_the_checksum(root: ArchiveRoot) -> None:
    data = bytearray(_compressed(*GOOD))
    data[-6] ^= 0x01
    with pytest.raises(NotAnArchive):
        list(root.events(_plant(root, bytes(data))))


def test_write_segment_round_trips_through_any_file(tmp_path: Path) -> None:
    out = io.BytesIO()
    write_segment(out, _header(1), [_event(1)])
    assert zstandard.ZstdDecompressor().decompressobj().decompress(out.getvalue()).count(b"\n") == 2


def test_temporary_files_of_a_crashed_write_are_removed(root: ArchiveRoot) -> None:
    (root.path / ".tmp-seg-000000000001-aaaa.jsonl.zst").write_bytes(b"half")
    assert root.locations() == []
    assert root.remove_temporary() == 1
    assert os.listdir(root.path) == []


def test_a_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArchiveError):
        ArchiveRoot(tmp_path / "file")
