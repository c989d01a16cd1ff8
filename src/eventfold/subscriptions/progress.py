"""A rich progress bar for rebuilds and time-travel builds: positions done out
of the head, events applied per second, and the time left."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _PositionsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else f"{task.total:,.0f}"
        return Text(f"{task.completed:,.0f}/{total}", style="progress.download")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        handled = task.fields.get("handled", 0)
        elapsed = task.elapsed or 0.0
        rate = handled / elapsed if elapsed > 0 else 0.0
        return Text(f"{handled:,} events, {rate:,.0f}/s", style="progress.data.speed")


class RichProgress:
    """``with RichProgress("order_summaries") as progress: await runner.rebuild(name,
    progress=progress)``. Progress is measured in log positions from the first
    one read (on PostgreSQL they are sparse, so the bar is an estimate); the
    rate counts events applied."""

    def __init__(self, label: str, *, console: Console | None = None) -> None:
        self.label = label
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            _PositionsColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._base: int | None = None

    def __enter__(self) -> RichProgress:
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=None, handled=0)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, position: int, head: int, handled: int) -> None:
        if self._task is None:
            return
        if self._base is None:
            self._base = position
        base = self._base
        self._progress.update(
            self._task,
            completed=position - base,
            total=max(head - base, position - base, 1),
            handled=handled,
        )
