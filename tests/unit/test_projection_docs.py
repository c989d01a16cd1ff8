"""docs/projections.md's snippets run as written: read your writes on
SQLite, and the same projection on a PostgreSQL read model."""

import asyncio
import contextlib
import io
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import with_params

DOC = Path(__file__).resolve().parents[2] / "docs" / "projections.md"


def test_the_read_your_writes_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    snippet, definitions = blocks[0], blocks[1]
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(definitions + "\n" + snippet, str(DOC), "exec"), {"__name__": "__doc__"})
    assert out.getvalue().splitlines() == ["[(70,)]", "True"]
    assert (tmp_path / "tour-reads.db").exists()


def test_the_postgres_read_model_snippet_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    snippet, definitions = blocks[0], blocks[1]
    (on_postgres,) = [b for b in blocks if "async def on_postgres" in b]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__doc__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(definitions + snippet + on_postgres, str(DOC), "exec"), namespace)
        store = with_params(postgres_url, schema=f"t_{uuid.uuid4().hex[:12]}")
        reads = with_params(postgres_url, schema=f"t_{uuid.uuid4().hex[:12]}")
        asyncio.run(namespace["on_postgres"](store, reads))
    assert out.getvalue().splitlines()[-1] == "[(25,)]"
