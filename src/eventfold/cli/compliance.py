"""Commands for audit and compliance: verify the hash chains, export the log,
forget a data subject."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from eventfold.cli.common import JsonOption, add_row, console, print_json, run, table
from eventfold.cli.stores import (
    MasterKeyOption,
    MaybeStoreOption,
    ReadFromOption,
    RegistryOption,
    keys_for,
    open_reader,
    open_store,
)
from eventfold.cli.tenants import TenantOption, TenantsOption, store_of
from eventfold.compliance.chain import Heads, take_heads, verify
from eventfold.compliance.export import export_jsonl
from eventfold.errors import ConfigurationError
from eventfold.store.capabilities import ChainReader, require
from eventfold.store.checks import NOT_JSON

app = typer.Typer()


def _read_checkpoint(path: Path) -> Heads:
    try:
        return msgspec.json.decode(path.read_bytes(), type=Heads)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the checkpoint {path}: {exc.strerror}") from None
    except NOT_JSON as exc:  # a ValidationError is a DecodeError too
        raise ConfigurationError(f"{path} is not a checkpoint of chain heads: {exc}") from None


def secret_from_env(env: str | None) -> bytes | None:
    """The secret in environment variable ``env`` (None if ``env`` is);
    ConfigurationError if it is empty or not set."""
    if env is None:
        return None
    value = os.environ.get(env)
    if not value:
        raise ConfigurationError(f"{env} is empty or not set", setting=env)
    return value.encode()


@app.command("verify")
def verify_command(
    store: MaybeStoreOption = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="chain heads written earlier by --write-checkpoint")
    ] = None,
    write_checkpoint: Annotated[
        Path | None, typer.Option(help="write the verified chain heads here")
    ] = None,
    key_env: Annotated[
        str | None,
        typer.Option(help="environment variable with the secret that signs checkpoints"),
    ] = None,
    tenant: TenantOption = None,
    tenants: TenantsOption = None,
    read_from: ReadFromOption = "replica",
    json: JsonOption = False,
) -> None:
    """Check every stream's hash chain; exit 1 naming each event modified,
    removed, inserted or reordered (and, against a checkpoint, each stream
    truncated or rewritten)."""
    url = store_of(store, tenant, tenants)

    async def main() -> bool:
        key = secret_from_env(key_env)
        heads = None if checkpoint is None else _read_checkpoint(checkpoint)
        async with open_reader(url, read_from=read_from) as opened:
            report = await verify(require(opened, ChainReader), checkpoint=heads, key=key)
        if write_checkpoint is not None and report.clean:
            write_checkpoint.write_bytes(msgspec.json.encode(take_heads(report, key)))
        if json:
            print_json(
                {
                    "clean": report.clean,
                    "streams": report.streams,
                    "events": report.events,
                    "findings": report.findings,
                }
            )
            return report.clean
        out = console()
        if report.clean:
            out.print(f"verified: {report.streams} streams, {report.events} events, all intact")
        else:
            found = table("stream", "version", "problem", "detail", title="tampering found")
            for f in report.findings:
                add_row(found, f.stream_id, f.version, f.problem, f.detail)
            out.print(found)
        if write_checkpoint is not None and report.clean:
            out.print(f"chain heads written to {write_checkpoint}", markup=False)
        return report.clean

    if not run(main()):
        raise typer.Exit(1)


@app.command("export")
def export_command(
    out: Path,
    store: MaybeStoreOption = None,
    registry: RegistryOption = None,
    category: Annotated[list[str] | None, typer.Option("--category")] = None,
    type: Annotated[list[str] | None, typer.Option("--type")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    tenant: TenantOption = None,
    tenants: TenantsOption = None,
    read_from: ReadFromOption = "replica",
) -> None:
    """Write events to a JSON Lines file. Personal fields stay encrypted, or
    with --registry are decrypted, forgotten subjects' fields as \\[redacted]."""
    store = store_of(store, tenant, tenants)

    async def main() -> int:
        async with open_reader(store, registry, read_from=read_from) as opened:
            head = await opened.head_position()
            bar = Progress(
                TextColumn("exporting"),
                BarColumn(),
                TextColumn("{task.completed} events"),
                TimeRemainingColumn(),
                disable=not progress,
                console=console(),
            )
            with bar:
                task = bar.add_task("export", total=head or None)
                count = await export_jsonl(
                    opened,
                    out,
                    categories=category,
                    types=type,
                    on_progress=lambda n, position: bar.update(task, completed=position),
                )
                bar.update(task, completed=head)
        return count

    count = run(main())
    console().print(f"{count} events written to {out}", markup=False)


@app.command()
def forget(
    subject: str,
    store: MaybeStoreOption = None,
    master_key_env: MasterKeyOption = "EVENTFOLD_MASTER_KEY",
    tenant: TenantOption = None,
    tenants: TenantsOption = None,
) -> None:
    """Destroy a data subject's keys: their personal fields read as \\[redacted]
    from now on. Rebuild read models that hold them (eventfold projections
    rebuild NAME --purge). With --tenant, in that tenant only."""
    store = store_of(store, tenant, tenants)

    async def main() -> int:
        async with open_store(store):
            pass  # the store must exist: a mistyped URL creates nothing
        keys = keys_for(store, master_key_env)
        try:
            return await keys.forget(subject)
        finally:
            await keys.close()

    count = run(main())
    console().print(f"forgot {subject!r}: {count} key(s) destroyed", markup=False)
