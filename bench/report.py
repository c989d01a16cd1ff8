"""Results as a table (terminal and markdown), JSON, and a chart of ratios."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

SCENARIOS: dict[str, str] = {
    "1_single": "1. one event per append, 1 writer",
    "2_writers_1": "2. concurrent appends, 1 writer",
    "2_writers_8": "2. concurrent appends, 8 writers",
    "2_writers_64": "2. concurrent appends, 64 writers",
    "3_batch": "3. one append of N events",
    "4_load": "4. load an aggregate of N events",
    "4_load_snapshot": "4. load: snapshot + 100 events",
    "5_read_log": "5. read the whole log, decoded",
    "6_projection": "6. projection catch-up, SQL read model",
    "7_dcb_writers_1": "7. DCB conditional appends, 1 writer",
    "7_dcb_writers_8": "7. DCB conditional appends, 8 writers",
    "7_dcb_writers_64": "7. DCB conditional appends, 64 writers",
    "8_dcb_reads": "8. DCB tag-query reads, decoded",
}
SIDES = ("eventfold", "eventsourcing", "raw")
BACKENDS = ("sqlite", "postgres")

# (scenario, compared side, minimum eventfold/other speed ratio, what it says)
TARGETS: list[tuple[str, str, float, str]] = [
    ("1_single", "raw", 0.70, "single-writer appends >= 70% of raw one-commit-per-event"),
    ("2_writers_64", "eventsourcing", 10.0, "64 writers >= 10x the peer"),
    ("3_batch", "raw", 0.75, "batch append >= 75% of raw"),
    ("5_read_log", "raw", 0.75, "decoded log read >= 75% of raw"),
    ("4_load", "raw", 0.5, "10,000-event load <= 2x raw read+decode time"),
    ("6_projection", "eventsourcing", 10.0, "projection catch-up >= 10x the peer"),
    ("7_dcb_writers_8", "eventsourcing", 3.0, "DCB conditional appends, 8 writers >= 3x the peer"),
]
# (scenario, p99 at most this many ms, what it says): latency targets of eventfold alone.
LATENCY_TARGETS: list[tuple[str, float, str]] = [
    ("7_dcb_writers_8", 2.0, "DCB conditional append p99 <= 2 ms, 8 writers, store filled"),
]
SOFT_TARGETS: dict[str, dict[str, float]] = {
    # "about 2x the peer on SQLite, 3x on PostgreSQL" for single appends
    "1_single": {"sqlite": 2.0, "postgres": 3.0},
}


# Bound measurements (bench/side_bounds.py), per scenario: what they measure.
BOUNDS: dict[str, str] = {
    "1_single": "the checks without eventfold's client (SQLite: the writer's statements on the"
    " caller's thread; PostgreSQL: its append function from one asyncio connection)",
    "3_batch": "the same checks for one append of N events",
    "5_read_log": "raw driver reading the full record (nine columns, UUID and datetime) + payload",
}


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """eventfold's speed divided by the other side's (events/s over events/s;
    for timed loads the inverse of the time ratio): above 1, eventfold is faster."""
    out: dict[str, Any] = {}
    for backend, scenarios in results.items():
        for key, cells in scenarios.items():
            ef = cells.get("eventfold")
            for other in ("eventsourcing", "raw", "bound"):
                cell = cells.get(other)
                if ef and cell:
                    out.setdefault(backend, {}).setdefault(key, {})[other] = (
                        ef["events_per_s"] / cell["events_per_s"]
                    )
    return out


def check_targets(
    ratio: dict[str, Any], results_of: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    results_of = results_of or {}
    checks = []
    for backend in BACKENDS:
        for key, other, minimum, text in TARGETS:
            value = ratio.get(backend, {}).get(key, {}).get(other)
            if value is None:
                continue
            checks.append(
                {
                    "backend": backend,
                    "scenario": key,
                    "versus": other,
                    "target": minimum,
                    "ratio": value,
                    "met": value >= minimum,
                    "what": text,
                }
            )
        for key, limit, text in LATENCY_TARGETS:
            cell = results_of.get(backend, {}).get(key, {}).get("eventfold")
            if cell and "p99_us" in cell:
                p99 = cell["p99_us"] / 1000
                checks.append(
                    {
                        "backend": backend,
                        "scenario": key,
                        "versus": "ms",
                        "target": limit,
                        "ratio": p99,
                        "met": p99 <= limit,
                        "what": text,
                    }
                )
        for key, by_backend in SOFT_TARGETS.items():
            value = ratio.get(backend, {}).get(key, {}).get("eventsourcing")
            if value is not None and backend in by_backend:
                minimum = by_backend[backend]
                checks.append(
                    {
                        "backend": backend,
                        "scenario": key,
                        "versus": "eventsourcing",
                        "target": minimum,
                        "ratio": value,
                        "met": value >= minimum,
                        "what": f"single appends about {minimum:g}x the peer",
                    }
                )
    return checks


def _rate(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _cell(cell: dict[str, Any] | None, key: str) -> str:
    if not cell:
        return "-"
    text = f"{_rate(cell['events_per_s'])}/s"
    if key.startswith("4_"):
        text += f" ({cell['p50_us'] / 1000:,.1f} ms/load)"
    elif key == "8_dcb_reads":
        text += f" (p50 {cell['p50_us'] / 1000:,.2f} / p99 {cell['p99_us'] / 1000:,.2f} ms/read)"
    elif key in ("3_batch", "5_read_log", "6_projection"):
        text += f" ({cell['ms']:,.0f} ms)"
    elif "p50_us" in cell:
        text += f" (p50 {cell['p50_us'] / 1000:,.2f} / p99 {cell['p99_us'] / 1000:,.2f} ms)"
    return text


def markdown(results: dict[str, Any], ratio: dict[str, Any]) -> str:
    lines = [
        "| scenario | backend | eventfold | eventsourcing | raw driver "
        "| eventfold / eventsourcing | eventfold / raw |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in SCENARIOS.items():
        for backend in BACKENDS:
            cells = results.get(backend, {}).get(key)
            if not cells:
                continue
            r = ratio.get(backend, {}).get(key, {})
            es = r.get("eventsourcing")
            raw = r.get("raw")
            lines.append(
                f"| {label} | {backend} | {_cell(cells.get('eventfold'), key)} | "
                f"{_cell(cells.get('eventsourcing'), key)} | {_cell(cells.get('raw'), key)} | "
                f"{'-' if es is None else f'{es:,.2f}x'} | "
                f"{'-' if raw is None else f'{raw:,.2f}x'} |"
            )
    return "\n".join(lines) + "\n"


def targets_markdown(checks: list[dict[str, Any]]) -> str:
    lines = ["| target | backend | measured | met |", "|---|---|---|---|"]
    for c in checks:
        if c["versus"] == "ms":
            measured = f"p99 {c['ratio']:,.2f} ms (target {c['target']:g} ms)"
        else:
            measured = f"{c['ratio']:,.2f}x of {c['versus']} (target {c['target']:g}x)"
        lines.append(
            f"| {c['what']} | {c['backend']} | {measured} | {'yes' if c['met'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def bounds_markdown(results: dict[str, Any], ratio: dict[str, Any]) -> str:
    """Each bound's speed, its ratio to the raw driver (the best a store doing
    that work could reach against the raw target) and eventfold's ratio to it."""
    lines = [
        "| bound | backend | bound | bound / raw | eventfold / bound |",
        "|---|---|---|---|---|",
    ]
    for key, what in BOUNDS.items():
        for backend in BACKENDS:
            cells = results.get(backend, {}).get(key, {})
            bound, raw = cells.get("bound"), cells.get("raw")
            if not bound or not raw:
                continue
            versus = ratio.get(backend, {}).get(key, {}).get("bound")
            lines.append(
                f"| {SCENARIOS[key]}: {what} | {backend} | {_cell(bound, key)} | "
                f"{bound['events_per_s'] / raw['events_per_s']:,.2f}x | "
                f"{'-' if versus is None else f'{versus:,.2f}x'} |"
            )
    return "\n".join(lines) + "\n"


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")


def chart(path: Path, ratio: dict[str, Any], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in SCENARIOS if any(k in ratio.get(b, {}) for b in BACKENDS)]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.55 * len(keys) + 2.2), sharey=True)
    colours = {"sqlite": "#4C72B0", "postgres": "#DD8452"}
    for ax, other in zip(axes, ("eventsourcing", "raw"), strict=True):
        height = 0.38
        for i, backend in enumerate(BACKENDS):
            values = [ratio.get(backend, {}).get(k, {}).get(other, math.nan) for k in keys]
            ys = [n + (i - 0.5) * height for n in range(len(keys))]
            bars = ax.barh(ys, values, height=height, color=colours[backend], label=backend)
            for bar, value in zip(bars, values, strict=True):
                if not math.isnan(value):
                    ax.text(
                        bar.get_width() * 1.05,
                        bar.get_y() + height / 2,
                        f"{value:.2f}x",
                        va="center",
                        fontsize=7,
                    )
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_title(f"eventfold / {other} (speed ratio, >1: eventfold faster)", fontsize=10)
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.set_xlim(left=0.1)
    axes[0].set_yticks(range(len(keys)))
    axes[0].set_yticklabels([SCENARIOS[k] for k in keys], fontsize=8)
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
