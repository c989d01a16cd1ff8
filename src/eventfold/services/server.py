"""Serving the two apps with uvicorn: the command API and the query API on
their own ports, in this process, over one ``Runtime``. SIGINT and SIGTERM
stop both servers, then the runtime (background loops, stores, bus)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Generator
from typing import Any

import uvicorn

from eventfold.services.http_commands import command_app
from eventfold.services.http_queries import query_app
from eventfold.services.runtime import Runtime, ServeConfig, ServiceDefinition


class _Server(uvicorn.Server):
    """Signals are handled once for all servers (by ``serve``), not by each."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def apps(runtime: Runtime) -> dict[str, Any]:
    """The ASGI apps of a started runtime: ``command`` and/or ``query``."""
    config, title = runtime.config, runtime.definition.title
    out: dict[str, Any] = {}
    if runtime.commands is not None:
        out["command"] = command_app(
            runtime.commands,
            runtime.queue,
            max_body_size=config.max_body_size,
            max_wait=max(config.max_wait, 30.0),
            title=f"{title} commands",
        )
    if runtime.query is not None:
        out["query"] = query_app(
            runtime.query, max_body_size=config.max_body_size, title=f"{title} queries"
        )
    return out


def _port(server: uvicorn.Server) -> int:
    for listener in getattr(server, "servers", []):
        for sock in listener.sockets:
            port: int = sock.getsockname()[1]
            return port
    return 0


async def serve(
    definition: ServiceDefinition,
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    command_port: int = 8000,
    query_port: int = 8001,
    log_level: str = "warning",
    announce: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set). Port 0 picks a free
    port; ``announce`` is told each API's URL once it listens."""
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    async with Runtime(definition, config) as runtime:
        ports = {"command": command_port, "query": query_port}
        servers: dict[str, _Server] = {}
        for role, app in apps(runtime).items():
            servers[role] = _Server(
                uvicorn.Config(
                    app,
                    host=host,
                    port=ports[role],
                    log_level=log_level,
                    lifespan="off",
                    access_log=False,
                    timeout_graceful_shutdown=5,
                )
            )
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        tasks = [asyncio.create_task(s.serve()) for s in servers.values()]
        try:
            while not all(s.started for s in servers.values()):
                if any(t.done() for t in tasks):
                    break
                await asyncio.sleep(0.02)
            for role, server in servers.items():
                if server.started:
                    announce(f"eventfold serve: {role} API on http://{host}:{_port(server)}")
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
        finally:
            for server in servers.values():
                server.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            for sig in installed:
                loop.remove_signal_handler(sig)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
