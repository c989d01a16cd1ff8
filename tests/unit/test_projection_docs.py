"""docs/projections.md's read-your-writes snippet runs as written."""

import contextlib
import io
import re
from pathlib import Path

import pytest

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
