"""Long operations an operator starts and watches: a projection's
blue/green rebuild and a check of the hash chains. Each runs as a task in
the background, reports its progress as it goes, and is kept (the latest
``KEEP``) with how it ended, for an operations console to show."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

log = logging.getLogger("eventfold.services")

KEEP = 50
"""How many operations, running and finished, are kept."""

State = Literal["running", "done", "failed"]


@dataclasses.dataclass(kw_only=True)
class Operation:
    """One operation: what (``kind``, ``target``), who started it, its
    progress (``done`` out of ``total``, ``handled`` events, ``rate`` per
    second), its state, and what came of it (``result``, or ``error``)."""

    id: int
    kind: str
    target: str
    started_by: str | None
    started_at: str
    state: State = "running"
    done: int = 0
    total: int = 0
    handled: int = 0
    rate: float = 0.0
    finished_at: str | None = None
    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None
    _started: float = dataclasses.field(default=0.0, repr=False)
    _base: int | None = dataclasses.field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        """What it says about itself (JSON-ready)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out = {k: v for k, v in out.items() if not k.startswith("_")}
        out["percent"] = round(self.percent, 1)
        out["rate"] = round(self.rate, 1)
        return out

    @property
    def percent(self) -> float:
        if self.state == "done":
            return 100.0
        if self.total <= 0:
            return 0.0
        return min(100.0, 100.0 * self.done / self.total)

    def positions(self, position: int, head: int, handled: int) -> None:
        """Progress in log positions (a rebuild's ``progress`` callback):
        measured from the first position reported."""
        if self._base is None:
            self._base = position
        self.done = position - self._base
        self.total = max(head - self._base, self.done, 1)
        self._count(handled)

    def count(self, done: int, total: int) -> None:
        """Progress in items (events checked out of the store's count)."""
        self.done, self.total = done, max(total, done)
        self._count(done)

    def _count(self, handled: int) -> None:
        self.handled = handled
        elapsed = time.monotonic() - self._started
        self.rate = handled / elapsed if elapsed > 0 else 0.0


class Operations:
    """The operations of one runtime (see the module docstring)."""

    def __init__(self) -> None:
        self._ops: dict[int, Operation] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._ids = itertools.count(1)

    def start(
        self,
        kind: str,
        target: str,
        work: Callable[[Operation], Awaitable[dict[str, Any]]],
        *,
        by: str | None = None,
    ) -> Operation:
        """Run ``work(operation)`` in the background; it reports progress on
        the operation and returns its result."""
        op = Operation(
            id=next(self._ids),
            kind=kind,
            target=target,
            started_by=by,
            started_at=datetime.now(UTC).isoformat(),
            _started=time.monotonic(),
        )
        self._ops[op.id] = op
        self._tasks[op.id] = asyncio.create_task(self._run(op, work), name=f"eventfold-{kind}")
        for old in sorted(self._ops)[:-KEEP]:
            if old not in self._tasks:
                del self._ops[old]
        return op

    async def _run(
        self, op: Operation, work: Callable[[Operation], Awaitable[dict[str, Any]]]
    ) -> None:
        try:
            op.result = await work(op)
            op.state = "done"
        except asyncio.CancelledError:
            op.state, op.error = "failed", "stopped"
            raise
        except Exception as exc:
            op.state, op.error = "failed", f"{type(exc).__name__}: {exc}"
            log.error("%s %s failed: %s", op.kind, op.target, exc)
        finally:
            op.finished_at = datetime.now(UTC).isoformat()
            self._tasks.pop(op.id, None)

    def get(self, op_id: int) -> Operation | None:
        return self._ops.get(op_id)

    def running(self, kind: str, target: str) -> Operation | None:
        """The operation of that kind on that target still running, if any."""
        for op in self._ops.values():
            if op.kind == kind and op.target == target and op.state == "running":
                return op
        return None

    def latest(self, limit: int = 20) -> list[Operation]:
        """The latest operations, newest first."""
        return [self._ops[i] for i in sorted(self._ops, reverse=True)[:limit]]

    async def wait(self, op_id: int, timeout: float) -> Operation | None:
        """The operation once it ended, or as it stands after ``timeout`` seconds."""
        task = self._tasks.get(op_id)
        if task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout)
        return self._ops.get(op_id)

    async def close(self) -> None:
        """Stop what is still running."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
