"""The `eventfold` commands that look at the log and keep it honest, run the
way a user runs them, on a SQLite store."""

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

import eventfold
from eventfold import Codec, Decider, EventRegistry, Metadata
from eventfold.cli import app
from eventfold.serialization.crypto import EncryptingStore
from eventfold.serialization.keys import SQLiteKeyStore

registry = EventRegistry()


@registry.register("Joined", personal=("email",), subject="member")
class Joined(msgspec.Struct, frozen=True):
    member: str
    email: str


@registry.register("Paid")
class Paid(msgspec.Struct, frozen=True):
    cents: int


class Account(msgspec.Struct, frozen=True):
    email: str = ""
    paid: int = 0


def evolve(state: Account, event: object) -> Account:
    if isinstance(event, Joined):
        return Account(event.email, state.paid)
    if isinstance(event, Paid):
        return Account(state.email, state.paid + event.cents)
    return state


accounts: Decider[object, object, Account] = Decider(lambda c, s: [c], evolve, Account)
codec = Codec(registry)
runner = CliRunner()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'events.db'}"

    async def fill() -> None:
        async with eventfold.connect(url) as inner:
            store = EncryptingStore(inner, registry, SQLiteKeyStore.for_url(url))
            who = Metadata(actor="ana", causation_id="cmd-1", extra={"reason": "signup"})
            await store.append("member-1", [codec.encode(Joined("m-1", "ada@secret.org"), who)])
            await store.append("member-2", [codec.encode(Joined("m-2", "bo@kept.org"), who)])
            for cents in (100, 250):
                await store.append("member-1", [codec.encode(Paid(cents), Metadata(actor="bo"))])
            await store.keys.close()

    asyncio.run(fill())
    return url


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_streams_categories_and_stats(store_url: str) -> None:
    out = invoke("streams", "--store", store_url)
    assert out.index("member-1") < out.index("member-2")
    assert "member" in invoke("categories", "--store", store_url)
    stats = invoke("stats", "--store", store_url)
    assert "events          4" in stats and "streams         2" in stats and "Paid" in stats


def test_show_keeps_personal_data_encrypted_unless_asked(store_url: str) -> None:
    plain = invoke("show", "member-1", "--store", store_url)
    assert "ada@secret.org" not in plain and "ef1:" in plain
    spec = "tests.unit.test_cli_log:registry"
    assert "ada@secret.org" in invoke("show", "member-1", "--store", store_url, "--registry", spec)


def test_history_names_who_why_and_what_caused_it(store_url: str) -> None:
    out = invoke("history", "member-1", "--store", store_url)
    assert "Joined" in out and "ana" in out and "signup" in out and "cmd-1" in out
    assert out.count("Paid") == 2 and "bo" in out


def test_state_at_a_moment(store_url: str) -> None:
    path = store_url.removeprefix("sqlite:///")
    con = sqlite3.connect(path)
    (second,) = con.execute(
        "SELECT recorded_at FROM events WHERE stream_id = 'member-1' AND version = 2"
    ).fetchone()
    con.close()
    moment = dt.datetime.fromtimestamp(second / 1e6, dt.UTC).isoformat()
    out = invoke(
        "at", "member-1", "--store", store_url, "--time", moment,
        "--decider", "tests.unit.test_cli_log:accounts",
        "--registry", "tests.unit.test_cli_log:registry",
    )  # fmt: skip
    assert "version 2" in out and '"paid": 100' in out and "ada@secret.org" in out


def test_sql(store_url: str) -> None:
    out = invoke(
        "sql", "SELECT type, count(*) AS n FROM events GROUP BY type", "--store", store_url
    )
    assert "Joined" in out and "Paid" in out
    refused = runner.invoke(app, ["sql", "DELETE FROM events", "--store", store_url])
    assert refused.exit_code == 1 and "ReadOnlyViolation" in refused.output


def test_tail_prints_the_log(store_url: str) -> None:
    out = invoke("tail", "--store", store_url, "--from-position", "1", "--for", "0")
    assert out.count("\n") == 4 and "member-2 v1 Joined" in out
    only = invoke(
        "tail", "--store", store_url, "--from-position", "1", "--type", "Paid", "--for", "0"
    )
    assert only.count("\n") == 2


def test_verify_clean_then_tampered(store_url: str, tmp_path: Path) -> None:
    heads = tmp_path / "heads.json"
    out = invoke("verify", "--store", store_url, "--write-checkpoint", str(heads))
    assert "all intact" in out and heads.exists()
    con = sqlite3.connect(store_url.removeprefix("sqlite:///"))
    con.execute("UPDATE events SET data = '{\"cents\":1}' WHERE stream_id='member-1' AND version=3")
    con.execute("DELETE FROM events WHERE stream_id = 'member-2'")
    con.commit()
    con.close()
    result = runner.invoke(
        app, ["verify", "--store", store_url, "--checkpoint", str(heads)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1
    assert "member-1" in result.output and "altered" in result.output
    assert "member-2" in result.output and "truncated" in result.output
    for content in (b"not json", b'{"heads": 1}', b'{"a": "\xff"}'):
        heads.write_bytes(content)
        bad = runner.invoke(app, ["verify", "--store", store_url, "--checkpoint", str(heads)])
        assert bad.exit_code == 1 and "ConfigurationError" in bad.output, bad.output
    missing = runner.invoke(
        app, ["verify", "--store", store_url, "--checkpoint", str(tmp_path / "none.json")]
    )
    assert missing.exit_code == 1 and "cannot read the checkpoint" in missing.output


def test_export_and_forget(store_url: str, tmp_path: Path) -> None:
    spec = "tests.unit.test_cli_log:registry"
    out = tmp_path / "all.jsonl"
    invoke("export", str(out), "--store", store_url, "--registry", spec, "--no-progress")
    assert b"ada@secret.org" in out.read_bytes()
    assert "1 key(s) destroyed" in invoke("forget", "m-1", "--store", store_url)
    invoke("export", str(out), "--store", store_url, "--registry", spec, "--no-progress")
    text = out.read_bytes()
    assert b"ada@secret.org" not in text and b"[redacted]" in text and b"bo@kept.org" in text
    assert "[redacted]" in invoke("show", "member-1", "--store", store_url, "--registry", spec)
