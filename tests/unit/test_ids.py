"""Event ids: time-ordered version-7 UUIDs, unique across threads and forks."""

from __future__ import annotations

import os
import pickle
import threading
import time
import uuid

import pytest

from eventfold.store import ids
from eventfold.store.api import NewEvent
from eventfold.store.ids import new_event_id


def test_ids_are_rfc_9562_version_7_uuids() -> None:
    for _ in range(1000):
        event_id = new_event_id()
        assert type(event_id) is uuid.UUID
        assert event_id.version == 7 and event_id.variant == uuid.RFC_4122
        same = uuid.UUID(str(event_id))
        assert same == event_id and hash(same) == hash(event_id)
        assert uuid.UUID(bytes=event_id.bytes) == event_id
        assert pickle.loads(pickle.dumps(event_id)) == event_id
    assert type(NewEvent("T", b"{}").event_id) is uuid.UUID


def test_ids_carry_the_time_they_were_made_and_sort_in_that_order() -> None:
    before = time.time_ns() // 1_000_000
    made = [new_event_id() for _ in range(10_000)]
    after = time.time_ns() // 1_000_000
    for event_id in made:
        assert before <= event_id.int >> 80 <= after  # the Unix time in ms, RFC 9562
    # Made one after another, they sort as made (the ms and its 1/4096ths);
    # only two made within the same 1/4096 ms may fall either way.
    stamps = [event_id.int >> 64 for event_id in made]
    assert stamps == sorted(stamps)
    assert len({event_id.int & ((1 << 62) - 1) for event_id in made}) == len(made)


def test_ids_do_not_go_back_when_the_clock_does(monkeypatch: pytest.MonkeyPatch) -> None:
    first = new_event_id()
    monkeypatch.setattr(ids, "_clock", lambda: time.time_ns() - 3_600_000_000_000)
    later = [new_event_id() for _ in range(100)]
    assert all(event_id.int >> 64 >= first.int >> 64 for event_id in later)
    assert all(event_id.version == 7 for event_id in later)


def test_ids_are_unique_across_threads() -> None:
    made: list[list[uuid.UUID]] = [[] for _ in range(8)]

    def make(out: list[uuid.UUID]) -> None:
        out.extend(new_event_id() for _ in range(20_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [event_id for out in made for event_id in out]
    assert len(set(every)) == len(every) == 160_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_reuse_the_parents_ids() -> None:
    new_event_id()  # the parent now holds unused random values
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids, then leave at once
        try:
            os.write(write, b"".join(new_event_id().bytes for _ in range(100)))
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    child = {uuid.UUID(bytes=data[i : i + 16]) for i in range(0, len(data), 16)}
    parent = {new_event_id() for _ in range(100)}
    assert len(child) == 100
    assert not child & parent, "the child reused ids the parent hands out next"
