"""Tampering directly in the SQLite file is named by verify(), by stream and version."""

import sqlite3
import uuid
from pathlib import Path

import msgspec

import eventfold
from eventfold.compliance.chain import Report, take_heads, verify
from eventfold.store import NewEvent


async def filled(path: Path) -> None:
    async with eventfold.connect(f"sqlite:///{path}") as store:
        for s in range(3):
            await store.append(
                f"acct-{s}",
                [NewEvent("Moved", msgspec.json.encode({"n": i, "to": "x"})) for i in range(5)],
            )


def raw(path: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    try:
        for sql, params in statements:
            con.execute(sql, params)
    finally:
        con.close()


async def report_of(path: Path, **kw: object) -> Report:
    async with eventfold.connect(f"sqlite:///{path}") as store:
        return await verify(store, **kw)  # type: ignore[arg-type]


def found(report: Report) -> list[tuple[str, int, str]]:
    return [(f.stream_id, f.version, f.problem) for f in report.findings]


async def test_untouched_store_verifies_clean(tmp_path: Path) -> None:
    await filled(tmp_path / "s.db")
    assert (await report_of(tmp_path / "s.db")).clean


async def test_edited_payload_byte(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await filled(path)
    raw(
        path,
        (
            'UPDATE events SET data = replace(data, \'"to":"x"\', \'"to":"y"\') '
            "WHERE stream_id = 'acct-1' AND version = 3",
            (),
        ),
    )
    assert found(await report_of(path)) == [("acct-1", 3, "altered")]


async def test_edited_metadata(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await filled(path)
    raw(
        path,
        (
            'UPDATE events SET metadata = \'{"actor":"eve"}\' '
            "WHERE stream_id = 'acct-2' AND version = 5",
            (),
        ),
    )
    assert found(await report_of(path)) == [("acct-2", 5, "altered")]


async def test_deleted_row(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await filled(path)
    raw(path, ("DELETE FROM events WHERE stream_id = 'acct-0' AND version = 2", ()))
    assert found(await report_of(path)) == [("acct-0", 2, "missing")]


async def test_swapped_versions(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await filled(path)
    raw(
        path,
        ("UPDATE events SET version = -1 WHERE stream_id = 'acct-1' AND version = 2", ()),
        ("UPDATE events SET version = 2 WHERE stream_id = 'acct-1' AND version = 3", ()),
        ("UPDATE events SET version = 3 WHERE stream_id = 'acct-1' AND version = -1", ()),
    )
    assert found(await report_of(path)) == [("acct-1", 2, "reordered"), ("acct-1", 3, "reordered")]


async def test_forged_event(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await filled(path)
    raw(
        path,
        (
            "INSERT INTO events (position, stream_id, version, category, type, event_id, "
            "schema_version, recorded_at, hash, metadata, data) SELECT max(position) + 1, "
            "'acct-2', 6, 'acct', 'Moved', ?, 1, 0, hash, '{}', '{\"n\":99}' FROM events "
            "WHERE stream_id = 'acct-2' AND version = 5",
            (uuid.uuid4().bytes,),
        ),
    )
    assert found(await report_of(path)) == [("acct-2", 6, "altered")]


async def test_truncated_and_deleted_streams_against_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await filled(path)
    key = b"kept-outside-the-database"
    heads = take_heads(await report_of(path), key)
    raw(
        path,
        ("DELETE FROM events WHERE stream_id = 'acct-0' AND version >= 4", ()),
        ("DELETE FROM events WHERE stream_id = 'acct-2'", ()),
    )
    assert (await report_of(path)).clean  # the chains that remain are intact ...
    report = await report_of(path, checkpoint=heads, key=key)  # ... the checkpoint knows better
    assert found(report) == [("acct-0", 4, "truncated"), ("acct-2", 1, "truncated")]


async def test_edited_tags_and_events_without_a_stream(tmp_path: Path) -> None:
    """A tag removed from a stream event or from an event appended without a
    stream (so that a condition would no longer see it), or such an event's
    payload edited: each is named."""
    path = tmp_path / "s.db"
    async with eventfold.connect(f"sqlite:///{path}") as store:
        await store.append("acct-0", [NewEvent("Moved", b'{"n": 0}', tags=("a", "b"))])
        first = await store.append_events([NewEvent("Claimed", b'{"n": 1}', tags=("seat:1",))])
        second = await store.append_events([NewEvent("Claimed", b'{"n": 2}', tags=("seat:2",))])
    assert (await report_of(path)).clean
    raw(
        path,
        ("UPDATE events SET tags = 'a' WHERE stream_id = 'acct-0'", ()),
        ("UPDATE events SET tags = NULL WHERE position = ?", (first,)),
        ("UPDATE events SET data = '{\"n\": 3}' WHERE position = ?", (second,)),
    )
    assert sorted(found(await report_of(path))) == [
        ("", first, "altered"),
        ("", second, "altered"),
        ("acct-0", 1, "altered"),
    ]
