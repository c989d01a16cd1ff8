"""End to end over real HTTP (uvicorn on loopback ports), real NATS
JetStream and real PostgreSQL: the command service and the query service
run as separate ``eventfold serve`` processes, each on its own database,
talking only through the bus. A command followed by a query carrying its
token always sees the command's effect."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.conftest import with_params
from tests.integration.test_http_serve import serving

ROUNDS = 30


def test_a_query_carrying_a_commands_token_sees_its_effect_across_processes(
    postgres_url: str, nats_url: str, nats_prefix: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:10]
    store = with_params(postgres_url, schema=f"e2e_store_{tag}")
    reads = with_params(postgres_url, schema=f"e2e_reads_{tag}")
    common = ("--nats", nats_url, "--prefix", nats_prefix)
    with (
        serving(
            "--role", "command", "--store", store, "--ack-wait", "5", *common, cwd=tmp_path
        ) as command_side,
        serving("--role", "query", "--read-model", reads, *common, cwd=tmp_path) as query_side,
        httpx.Client(base_url=command_side.command, timeout=20) as commands,
        httpx.Client(base_url=query_side.query, timeout=20) as queries,
    ):
        order = f"order-{tag}"
        placed = commands.post("/commands/PlaceOrder", json={"order_id": order, "customer_id": "e"})
        assert placed.status_code == 200, placed.text
        for n in range(ROUNDS):
            line = {"order_id": order, "sku": f"sku{n}", "quantity": 1, "unit_price_cents": n}
            headers = {"Prefer": "respond-async, wait=10"} if n % 5 == 4 else {}
            sent = commands.post("/commands/AddLine", json=line, headers=headers)
            assert sent.status_code == 200, sent.text
            outcome = sent.json()
            assert outcome["version"] == n + 2
            token = sent.headers["Eventfold-Position"]
            answer = queries.get(
                "/queries/order",
                params={"order_id": order},
                headers={"Eventfold-Min-Position": token},
            )
            assert answer.status_code == 200, answer.text
            row = answer.json()["rows"][0]
            assert row["lines"] == n + 1, (n, answer.json())
            assert answer.json()["freshness"]["position"] >= int(token)
            if n % 3 == 0:
                history = queries.get(f"/streams/{order}/events", params={"min_position": token})
                assert history.json()["events"][-1]["version"] >= n + 2
        status = queries.get("/status").json()
        consumer = status["details"]["consumer"]
        assert consumer["parked"] == 0
        assert consumer["mirror"]["head"] >= int(token)
