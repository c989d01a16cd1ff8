"""The shop's customers and the law: personal data encrypted per customer,
forgotten on request, and a log that proves it was not tampered with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from eventfold import NO_STREAM, Codec, EventStore, Metadata
from eventfold.compliance.chain import verify
from eventfold.examples.shop.events import CustomerRegistered, registry
from eventfold.serialization.crypto import EncryptingStore
from eventfold.serialization.keys import SQLiteKeyStore
from eventfold.store.capabilities import ChainReader, require


async def forget_a_customer(store: EventStore, path: Path, out: Any = print) -> None:
    codec = Codec(registry)
    keys = SQLiteKeyStore(path)
    private = EncryptingStore(store, registry, keys)
    try:
        out("\nCustomers, with personal data encrypted per customer:")
        desk = Metadata(actor="front-desk", extra={"reason": "sign-up"})
        for cid, name, email in [
            ("customer-ada", "Ada Lovelace", "ada@example.org"),
            ("customer-bo", "Bo Peep", "bo@example.org"),
        ]:
            event = codec.encode(CustomerRegistered(cid, name, email), desk)
            await private.append(cid, [event], NO_STREAM)
        await show(store, private, codec, "customer-ada", out)

        out("\nAda asks to be forgotten:")
        await private.forget("customer-ada")
        await show(store, private, codec, "customer-ada", out)
        bo = [codec.decode_event(r) async for r in private.read_stream("customer-bo")]
        out(f"  customer-bo is untouched: {bo[0]!r}")

        report = await verify(require(store, ChainReader))
        verdict = "all intact" if report.clean else f"{len(report.findings)} problems"
        out(f"\nVerifying the log: {report.streams} streams, {report.events} events, {verdict}")
    finally:
        await keys.close()


async def show(
    raw: EventStore, private: EncryptingStore, codec: Codec, stream: str, out: Any
) -> None:
    async for record in raw.read_stream(stream):
        stored = msgspec.json.decode(record.data)
        out(f"  stored:    name={stored['name'][:40]}…")
    async for record in private.read_stream(stream):
        out(f"  read back: {codec.decode_event(record)!r}")
