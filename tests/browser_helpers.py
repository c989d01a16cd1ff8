"""A real browser for the console's tests, and services for it to visit.

``chromium_executable()`` finds Debian's chromium (installed by ``make
test``'s ``browser`` target); ``chromium()`` drives it through Playwright,
headless, in a fresh profile, with ``FLAGS``: the network features that would
reach outside this machine turned off. If it is missing or cannot start, the
test is skipped, or fails under ``CI=true``.

``Served`` runs a ``Runtime`` and its HTTP apps (uvicorn, loopback, free
ports) on an event loop of its own in a thread, so that a test driving the
browser synchronously can also reach into the running services
(``call``)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn, TypeVar

import pytest
import uvicorn

from eventfold.security.authn import Security
from eventfold.services import Runtime, ServeConfig, ServiceDefinition
from eventfold.services.server import apps
from tests.conftest import in_ci

T = TypeVar("T")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"a browser is required under CI=true but cannot start: {reason}")
    pytest.skip(f"no browser: {reason}")


def chromium_executable() -> str:
    """Debian's chromium (never a browser downloaded by a tool)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        browser_unavailable("chromium is not installed (make test installs it)")
    return found


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright browser context on Debian's chromium, in a fresh profile."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - playwright is in the dev extra
        browser_unavailable(f"playwright is not installed: {exc}")
    executable = chromium_executable()
    profile = tempfile.mkdtemp(prefix="eventfold-chromium-")
    try:
        with sync_playwright() as playwright:
            try:
                context = playwright.chromium.launch_persistent_context(
                    profile,
                    executable_path=executable,
                    headless=True,
                    args=FLAGS,
                    viewport={"width": 1280, "height": 860},
                )
            except Exception as exc:
                browser_unavailable(f"{executable}: {exc}")
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class Served:
    """A runtime and its apps served on loopback ports from a thread."""

    def __init__(
        self,
        definition: ServiceDefinition,
        config: ServeConfig,
        *,
        security: Security | None = None,
    ) -> None:
        self.definition = definition
        self.config = config
        self.security = security
        self.urls: dict[str, str] = {}
        self.runtime: Runtime | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="eventfold-served", daemon=True)

    def __enter__(self) -> Served:
        self._thread.start()
        if not self._ready.wait(60) or self._failed is not None:
            raise AssertionError(f"the services did not start: {self._failed!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def call(self, work: Callable[[Runtime], Awaitable[T]], timeout: float = 60) -> T:
        """Run ``work(runtime)`` on the services' loop and return its result."""
        assert self.runtime is not None
        runtime = self.runtime
        return asyncio.run_coroutine_threadsafe(work(runtime), self._loop).result(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with Runtime(self.definition, self.config) as runtime:
            self.runtime = runtime
            servers = {
                role: uvicorn.Server(
                    uvicorn.Config(
                        app,
                        host="127.0.0.1",
                        port=0,
                        log_level="warning",
                        lifespan="off",
                        access_log=False,
                    )
                )
                for role, app in apps(runtime, security=self.security).items()
            }
            tasks = [asyncio.create_task(s.serve()) for s in servers.values()]
            try:
                while not all(s.started for s in servers.values()):
                    if any(t.done() for t in tasks):
                        raise AssertionError("a server stopped while starting")
                    await asyncio.sleep(0.02)
                for role, server in servers.items():
                    port = server.servers[0].sockets[0].getsockname()[1]
                    self.urls[role] = f"http://127.0.0.1:{port}"
                self._ready.set()
                await self._stop.wait()
            finally:
                for server in servers.values():
                    server.should_exit = True
                await asyncio.gather(*tasks, return_exceptions=True)
