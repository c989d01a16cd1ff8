"""The options that name the bus and log in to it, shared by the commands
that use it (``serve``, ``tenants delete``). Passwords and tokens come from a
file or the environment, never the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

NatsOption = Annotated[
    str | None,
    typer.Option(
        "--nats",
        envvar="EVENTFOLD_NATS",
        help="NATS URL(s), comma separated; without it the bus is in-process",
    ),
]
PrefixOption = Annotated[str, typer.Option("--prefix", help="subject and stream prefix")]
NatsUserOption = Annotated[str | None, typer.Option("--nats-user", help="NATS user")]
NatsPasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--nats-password-file",
        help="file holding the NATS password (or EVENTFOLD_NATS_PASSWORD)",
    ),
]
NatsTokenFileOption = Annotated[
    Path | None,
    typer.Option("--nats-token-file", help="file holding the NATS token (or EVENTFOLD_NATS_TOKEN)"),
]
