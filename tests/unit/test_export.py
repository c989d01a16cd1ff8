"""JSON Lines export: every selected event, in order, and redaction respected."""

from pathlib import Path

import msgspec
import pytest

from eventfold import Codec, EventRegistry
from eventfold.compliance.export import export_jsonl
from eventfold.serialization.crypto import REDACTED, EncryptingStore
from eventfold.serialization.keys import MemoryKeyStore
from eventfold.store import MemoryStore, NewEvent

registry = EventRegistry()


@registry.register("Signed", personal=("email",), subject="who")
class Signed(msgspec.Struct, frozen=True):
    who: str
    email: str


codec = Codec(registry)


async def test_export_writes_each_event_once_in_order(tmp_path: Path) -> None:
    store = EncryptingStore(MemoryStore(), registry, MemoryKeyStore())
    for i in range(2500):
        await store.append(f"user-{i % 3}", [codec.encode(Signed(f"u{i % 3}", f"{i}@x.org"))])
    seen: list[int] = []
    count = await export_jsonl(
        store, tmp_path / "out.jsonl", on_progress=lambda n, p: seen.append(n)
    )
    assert count == 2500 and seen == [1000, 2000]
    lines = (tmp_path / "out.jsonl").read_bytes().splitlines()
    rows = [msgspec.json.decode(line) for line in lines]
    assert [r["position"] for r in rows] == list(range(1, 2501))
    assert rows[7]["data"] == {"who": "u1", "email": "7@x.org"}
    assert rows[7]["stream_id"] == "user-1" and rows[7]["type"] == "Signed"


async def test_export_of_a_forgotten_subject_holds_no_plaintext(tmp_path: Path) -> None:
    store = EncryptingStore(MemoryStore(), registry, MemoryKeyStore())
    await store.append("user-1", [codec.encode(Signed("ada", "ada@secret.org"))])
    await store.append("user-2", [codec.encode(Signed("bo", "bo@kept.org"))])
    await store.forget("ada")
    await export_jsonl(store, tmp_path / "out.jsonl", categories=["user"])
    text = (tmp_path / "out.jsonl").read_bytes()
    assert b"ada@secret.org" not in text and REDACTED.encode() in text
    assert b"bo@kept.org" in text


async def test_a_failed_export_leaves_no_file(tmp_path: Path) -> None:
    store = MemoryStore()
    await store.append("user-1", [codec.encode(Signed("a", "a@x"))])
    await store.close()
    with pytest.raises(Exception, match="closed"):
        await export_jsonl(store, tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == []


async def test_export_lines_carry_tags_and_events_without_a_stream(tmp_path: Path) -> None:
    store = MemoryStore()
    await store.append("user-1", [NewEvent("Signed", b'{"who": "u1", "email": "e"}')])
    await store.append_events([NewEvent("Claimed", b"{}", tags=("seat:1", "row:2"))])
    await export_jsonl(store, tmp_path / "out.jsonl")
    first, second = [
        msgspec.json.decode(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()
    ]
    assert "tags" not in first
    assert (second["stream_id"], second["version"], second["tags"]) == ("", 2, ["seat:1", "row:2"])
