"""The README's tour runs exactly as written and prints what it says."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 4
    return "\n".join(blocks)


def test_the_tour_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(tour_code(), str(README), "exec"), {"__name__": "__tour__"})
    printed = out.getvalue()
    for expected in [
        "AppendResult(stream_id='account-1', version=2, position=2)",
        "stream 'account-1': expected version 1, actual version 2",
        "1 Deposited Deposited(amount=100)",
        "2 Withdrawn Withdrawn(amount=30)",
        "Balance(amount=35)",
        "Balance(amount=30)",
        "Balance(amount=50)",
        "rejected: only 35 available",
        "[(70,)]",
        "True",
    ]:
        assert expected in printed, printed
    assert (tmp_path / "tour.db").exists() and (tmp_path / "tour-reads.db").exists()
