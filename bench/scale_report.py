"""The scale run's tables, from the JSON files ``bench.scale --out`` writes.

    python -m bench.scale_report bench/results/scale-sqlite.json bench/results/scale-postgres.json
    python -m bench.scale_report --docs FILE...     # into docs/benchmarks.md

``--compare BEFORE AFTER [...]`` prints one table of several runs of the same
sizes side by side instead (the cost of partitioning: the same sizes before
and after, on one server)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- bench:scale:start -->"
END = "<!-- bench:scale:end -->"

ROWS: list[tuple[str, str, str]] = [
    # label, path into one size's results, format
    ("batch append (ev/s)", "batch.events_per_s", "{:,.0f}"),
    ("single append p50 (ms)", "single.p50_ms", "{:.2f}"),
    ("single append p99 (ms)", "single.p99_ms", "{:.2f}"),
    ("read whole log, decoded (ev/s)", "read_log.events_per_s", "{:,.0f}"),
    ("random stream read p50 (ms)", "read_streams.p50_ms", "{:.2f}"),
    ("random stream read p99 (ms)", "read_streams.p99_ms", "{:.2f}"),
    ("projection catch-up (ev/s)", "catch_up.events_per_s", "{:,.0f}"),
    ("export to JSON Lines (ev/s)", "export.events_per_s", "{:,.0f}"),
    ("database bytes per event", "database.bytes_per_event", "{:,.0f}"),
    ("peak RSS: process that read one event (MiB)", "baseline.rss_mib", "{:.0f}"),
    ("peak RSS: whole-log read (MiB)", "read_log.rss_mib", "{:.0f}"),
    ("peak RSS: stream reads (MiB)", "read_streams.rss_mib", "{:.0f}"),
    ("peak RSS: catch-up (MiB)", "catch_up.rss_mib", "{:.0f}"),
    ("peak RSS: export (MiB)", "export.rss_mib", "{:.0f}"),
    ("growth to this size (ev/s, append_many)", "growth.events_per_s", "{:,.0f}"),
]


def get(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def cell(result: dict[str, Any], path: str, fmt: str) -> str:
    value = get(result, path)
    return "" if value is None else fmt.format(value)


def ratio(first: dict[str, Any], last: dict[str, Any], path: str) -> str:
    a, b = get(first, path), get(last, path)
    if not a or b is None:
        return ""
    return f"{b / a:.2f}x"


def table(columns: list[tuple[str, dict[str, Any]]], with_ratio: bool) -> list[str]:
    head = (
        "| | "
        + " | ".join(name for name, _ in columns)
        + (" | last / first |" if with_ratio else " |")
    )
    lines = [head, "| --- " * (len(columns) + 1 + with_ratio) + "|"]
    for label, path, fmt in ROWS:
        cells = [cell(result, path, fmt) for _, result in columns]
        if not any(cells):
            continue
        extra = f" | {ratio(columns[0][1], columns[-1][1], path)}" if with_ratio else ""
        lines.append(f"| {label} | " + " | ".join(cells) + extra + " |")
    return lines


def render(documents: list[dict[str, Any]]) -> str:
    out: list[str] = []
    for doc in documents:
        machine = doc.get("machine", {})
        for backend, results in doc["results"].items():
            if not results:
                continue
            out.append(
                f"**{backend}** (`{doc['command']}`, started {doc['started']}, "
                f"{'finished ' + doc['finished'] if 'finished' in doc else 'unfinished'}; "
                f"{machine.get('cores')} cores, load average"
                f" {machine.get('load_average_at_start')} at the start)\n"
            )
            columns = [(f"{r['events']:,} events", r) for r in results]
            out += table(columns, with_ratio=len(columns) > 1)
            parts = results[-1].get("partitions")
            if parts:
                listed = ", ".join(
                    f"{p['name']}: {p['events']:,} rows,"
                    f" {p['index_bytes'] / 2**20:.1f} MiB of indexes"
                    for p in parts
                )
                out.append(f"\nPartitions at {results[-1]['events']:,} events: {listed}.")
            out.append("")
    return "\n".join(out)


def compare(named: list[tuple[str, dict[str, Any]]]) -> str:
    out: list[str] = []
    backend = "postgres"
    sizes = len(named[0][1]["results"][backend])
    for i in range(sizes):
        columns = [(name, doc["results"][backend][i]) for name, doc in named]
        events = columns[0][1]["events"]
        out.append(f"At {events:,} events:\n")
        out += table(columns, with_ratio=False)
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_report")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--docs", action="store_true")
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    documents = [json.loads(f.read_text()) for f in args.files]
    if args.compare:
        print(compare([(f.stem, d) for f, d in zip(args.files, documents, strict=True)]))
        return
    text = render(documents)
    if not args.docs:
        print(text)
        return
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    (ROOT / "docs" / "benchmarks.md").write_text(f"{head}{START}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    main()
