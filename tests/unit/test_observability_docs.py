"""docs/observability.md lists every metric the registry defines, and the
Grafana dashboard in docs/grafana/ asks only for metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from eventfold.observability.metrics import MEASURED, Metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def families() -> set[str]:
    """Every metric's exposed name (counters with their _total)."""
    names = set()
    for family in Metrics().registry.collect():
        name = family.name if family.type != "counter" else f"{family.name}_total"
        names.add(name)
    names |= {
        f"eventfold_{name}_total" if kind == "counter" else f"eventfold_{name}"
        for name, (kind, _, _) in MEASURED.items()
    }
    return names


def base(name: str) -> str:
    for suffix in SUFFIXES[1:]:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_every_metric_is_documented_and_the_dashboard_uses_real_ones() -> None:
    names = families()
    assert len(names) >= 19
    page = (DOCS / "observability.md").read_text()
    listed = set(re.findall(r"^\| `(eventfold_[a-z_]+)` \|", page, re.MULTILINE))
    assert listed == names
    dashboard = json.loads((DOCS / "grafana" / "eventfold.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {base(n) for e in exprs for n in re.findall(r"eventfold_[a-z_]+", e)}
    known = {base(n) for n in names} | {n.removesuffix("_total") for n in names}
    assert used and used <= known, used - known
