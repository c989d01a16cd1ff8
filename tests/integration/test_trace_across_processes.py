"""One trace from an HTTP command to a read model in another process: the
command service and the query service run as two ``eventfold serve``
processes on real NATS JetStream, each recording its spans in memory
(tests/integration/traced_serve.py). The trace context travels in the
event's metadata and in the NATS message's headers; the projection's span
on the query side links to the command's trace."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.integration.test_http_serve import serving

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE}-00f067aa0ba902b7-01"
TRACED = [sys.executable, str(Path(__file__).with_name("traced_serve.py"))]


def spans_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def one(spans: list[dict[str, Any]], prefix: str, **attributes: Any) -> dict[str, Any]:
    found = [
        s
        for s in spans
        if s["name"].startswith(prefix)
        and all(s["attributes"].get(k) == v for k, v in attributes.items())
    ]
    assert found, (prefix, attributes, sorted({s["name"] for s in spans}))
    return found[0]


def test_one_trace_runs_from_the_command_to_the_projection_across_processes(
    nats_url: str, nats_prefix: str, tmp_path: Path
) -> None:
    command_spans, query_spans = tmp_path / "command.jsonl", tmp_path / "query.jsonl"
    common = ("--nats", nats_url, "--prefix", nats_prefix)
    store = f"sqlite:///{tmp_path / 'events.db'}"
    reads = f"sqlite:///{tmp_path / 'reads.db'}"
    with (
        serving(
            "--role",
            "command",
            "--store",
            store,
            *common,
            cwd=tmp_path,
            command=TRACED,
            env={"EVENTFOLD_SPANS": str(command_spans)},
        ) as command_side,
        serving(
            "--role",
            "query",
            "--read-model",
            reads,
            *common,
            cwd=tmp_path,
            command=TRACED,
            env={"EVENTFOLD_SPANS": str(query_spans)},
        ) as query_side,
        httpx.Client(base_url=command_side.command, timeout=20) as commands,
        httpx.Client(base_url=query_side.query, timeout=20) as queries,
    ):
        placed = commands.post(
            "/commands/PlaceOrder",
            json={"order_id": "order-1", "customer_id": "ada"},
            headers={"traceparent": CALLER},
        )
        assert placed.status_code == 200, placed.text
        token = placed.headers["Eventfold-Position"]
        answer = queries.get(
            "/queries/order", params={"order_id": "order-1", "min_position": token}
        )
        assert answer.status_code == 200 and answer.json()["rows"], answer.text
        history = queries.get("/streams/order-1/events").json()["events"]
        stored = history[0]["metadata"]["traceparent"]
    command, query = spans_of(command_spans), spans_of(query_spans)

    # The command side: the request, the command, the append, the relay's send.
    request = one(command, "POST /commands")
    assert request["kind"] == "SERVER" and request["trace_id"] == TRACE
    assert request["parent"] == "00f067aa0ba902b7"
    handled = one(command, "command PlaceOrder")
    assert handled["parent"] == request["span_id"] and handled["trace_id"] == TRACE
    append = one(command, "append sqlite", **{"db.operation.name": "append"})
    assert append["parent"] == handled["span_id"] and append["trace_id"] == TRACE
    assert append["attributes"]["db.system.name"] == "sqlite"
    assert append["attributes"]["eventfold.stream_id"] == "order-1"
    # The event keeps the append's context in its metadata.
    assert stored.split("-")[1:3] == [TRACE, append["span_id"]]
    send = one(command, "send", **{"eventfold.stream_id": "order-1"})
    assert send["kind"] == "PRODUCER" and send["trace_id"] == TRACE
    assert send["parent"] == append["span_id"]
    assert send["attributes"]["messaging.operation.type"] == "send"
    assert send["attributes"]["messaging.destination.name"].endswith("_EVENTS")

    # The query side: the consumer takes the message in as a child of the
    # send span, whose context came in the NATS message's headers.
    process = one(query, "process", **{"messaging.operation.type": "process"})
    assert process["kind"] == "CONSUMER" and process["trace_id"] == TRACE
    assert process["parent"] == send["span_id"]
    assert process["attributes"]["messaging.consumer.group.name"] == "eventfold-mirror"
    assert process["attributes"]["eventfold.verdict"] == "applied"
    received = one(query, "receive")
    assert {"trace_id": TRACE, "span_id": send["span_id"]} in received["links"]
    settled = one(query, "settle")
    assert settled["attributes"]["messaging.operation.type"] == "settle"
    # The projection applies the event in a trace of its own, linked to the command's.
    applied = one(query, "apply order_summaries OrderPlaced")
    assert applied["trace_id"] != TRACE
    assert {"trace_id": TRACE, "span_id": append["span_id"]} in applied["links"]
    assert applied["attributes"]["eventfold.stream_id"] == "order-1"
    assert applied["attributes"]["eventfold.position"] == int(token)
