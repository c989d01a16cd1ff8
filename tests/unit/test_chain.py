"""The hash chain over the memory store: clean verification, and each kind of
tampering named by stream and version."""

import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest

from eventfold.compliance.chain import ChainLink, Heads, take_heads, verify
from eventfold.errors import InvalidArgument
from eventfold.store import MemoryStore, NewEvent
from eventfold.store.chain import GENESIS, link_hash, link_message


class Tampered:
    """Chain links of a store, edited the way someone with database access could."""

    def __init__(self, links: list[ChainLink]) -> None:
        self.links = links

    async def read_chain(self) -> AsyncIterator[ChainLink]:
        for link in sorted(self.links, key=lambda r: (r.stream_id, r.version)):
            yield link


async def filled() -> tuple[MemoryStore, list[ChainLink]]:
    store = MemoryStore()
    for s in range(3):
        await store.append(
            f"acct-{s}", [NewEvent("Moved", msgspec.json.encode({"n": i})) for i in range(5)]
        )
    return store, [link async for link in store.read_chain()]


def edit(links: list[ChainLink], stream: str, version: int, **changes: object) -> list[ChainLink]:
    return [
        msgspec.structs.replace(link, **changes)
        if (link.stream_id, link.version) == (stream, version)
        else link
        for link in links
    ]


def found(report: object) -> list[tuple[str, int, str]]:
    return [(f.stream_id, f.version, f.problem) for f in report.findings]  # type: ignore[attr-defined]


async def test_an_untouched_store_verifies_clean() -> None:
    store, _ = await filled()
    report = await verify(store)
    assert report.clean and (report.streams, report.events) == (3, 15)


async def test_an_edited_payload_is_named() -> None:
    _, links = await filled()
    report = await verify(Tampered(edit(links, "acct-1", 3, data='{"n":300}')))
    assert found(report) == [("acct-1", 3, "altered")]


async def test_a_deleted_event_is_named() -> None:
    _, links = await filled()
    gone = [link for link in links if (link.stream_id, link.version) != ("acct-2", 2)]
    assert found(await verify(Tampered(gone))) == [("acct-2", 2, "missing")]


async def test_swapped_versions_are_named() -> None:
    _, links = await filled()
    # Exchange the version numbers of two rows, as an UPDATE would.
    renumber = {("acct-0", 2): 3, ("acct-0", 3): 2}
    swapped = [
        msgspec.structs.replace(
            link, version=renumber.get((link.stream_id, link.version), link.version)
        )
        for link in links
    ]
    report = await verify(Tampered(swapped))
    assert found(report) == [("acct-0", 2, "reordered"), ("acct-0", 3, "reordered")]


async def test_a_forged_event_is_named() -> None:
    _, links = await filled()
    last = links[4]
    forged = msgspec.structs.replace(last, version=6, event_id=uuid.uuid4(), hash=bytes(32))
    assert found(await verify(Tampered([*links, forged]))) == [("acct-0", 6, "altered")]


async def test_truncation_is_caught_against_a_signed_checkpoint() -> None:
    store, links = await filled()
    key = b"audit-secret"
    heads = take_heads(await verify(store), key)
    assert (await verify(store, checkpoint=heads, key=key)).clean
    short = [link for link in links if not (link.stream_id == "acct-1" and link.version >= 4)]
    no_stream = [link for link in links if link.stream_id != "acct-2"]
    assert found(await verify(Tampered(short), checkpoint=heads)) == [("acct-1", 4, "truncated")]
    assert found(await verify(Tampered(no_stream), checkpoint=heads)) == [
        ("acct-2", 1, "truncated")
    ]
    forged_heads = msgspec.structs.replace(heads, heads={"acct-0": (1, "0" * 64)})
    with pytest.raises(InvalidArgument):
        await verify(store, checkpoint=forged_heads, key=key)
    decoded = msgspec.json.decode(msgspec.json.encode(heads), type=Heads)
    assert decoded.check_signature(key)


async def test_a_rewritten_history_is_caught_against_a_checkpoint() -> None:
    store, links = await filled()
    heads = take_heads(await verify(store))
    rewritten = edit(links, "acct-0", 5, hash=b"f" * 32)
    report = await verify(Tampered(rewritten), checkpoint=heads)
    assert ("acct-0", 5, "rewritten") in found(report)


def test_tags_extend_the_message_only_when_there_are_some() -> None:
    """An event without tags hashes as it did before tags existed; tags are
    appended after a NUL byte (which JSON text never holds), one a line."""
    event_id = uuid.UUID(int=7)
    plain = link_message(GENESIS, "s-1", 1, event_id, "T", 1, b'{"a":1}', b"{}")
    assert link_message(GENESIS, "s-1", 1, event_id, "T", 1, b'{"a":1}', b"{}", ()) == plain
    tagged = link_message(GENESIS, "s-1", 1, event_id, "T", 1, b'{"a":1}', b"{}", ("x", "y:1"))
    assert tagged == plain + b"\x00x\ny:1"
    assert link_hash(GENESIS, "s-1", 1, event_id, "T", 1, b"{}", b"{}", ("x",)) != link_hash(
        GENESIS, "s-1", 1, event_id, "T", 1, b"{}", b"{}", ("y",)
    )
