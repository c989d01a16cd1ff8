"""Snippets in docs/ run as written: domain.md's Aggregate example, and
compliance.md's import paths."""

import contextlib
import io
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC = DOCS / "domain.md"


def marked_block(path: Path, marker: str) -> str:
    text = path.read_text().split(f"<!-- {marker}", 1)[1]
    block = re.search(r"```python\n(.*?)```", text, flags=re.S)
    assert block is not None
    return block.group(1)


def test_the_aggregate_example_runs() -> None:
    block = marked_block(DOC, "aggregate-example")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(DOC), "exec"), {"__name__": "__doc__"})
    assert out.getvalue().splitlines() == [
        "[CartCheckedOut(items=3)] 3",
        "{'apple': 3} True",
        "refused: only an open cart takes items",
    ]


def test_the_compliance_import_paths_hold() -> None:
    path = DOCS / "compliance.md"
    namespace: dict[str, object] = {}
    exec(compile(marked_block(path, "imports"), str(path), "exec"), namespace)
    assert {"EncryptingStore", "verify", "export_jsonl", "PostgresKeyStore"} <= set(namespace)
