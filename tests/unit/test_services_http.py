"""The two HTTP apps on the embedded runtime (in-process bus), through
Litestar's ASGI test client: statuses, tokens, freshness, the cache, the
OpenAPI document, and bad requests that write nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from eventfold.examples.shop.services import service
from eventfold.services import Runtime, ServeConfig
from eventfold.services.server import apps

Clients = tuple[httpx.AsyncClient, httpx.AsyncClient, Runtime]


@contextlib.asynccontextmanager
async def services(tmp_path: Path, **config: Any) -> AsyncIterator[Clients]:
    settings = ServeConfig(
        store="memory://",
        read_model=f"sqlite:///{tmp_path / 'reads.db'}",
        outcomes="memory://",
        poll_interval=0.05,
        max_wait=2.0,
        **config,
    )
    async with Runtime(service, settings) as runtime:
        built = apps(runtime)
        # In this event loop, beside the runtime's background work (Litestar's
        # test client would run the app on a loop of its own, in a thread).
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(built["command"]), base_url="http://commands"
            ) as commands,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(built["query"]), base_url="http://queries"
            ) as queries,
        ):
            yield commands, queries, runtime


async def head(runtime: Runtime) -> int:
    assert runtime.store is not None
    return await runtime.store.head_position()


async def test_a_query_with_the_commands_token_sees_its_effect(tmp_path: Path) -> None:
    async with services(tmp_path) as (commands, queries, _):
        placed = await commands.post(
            "/commands/PlaceOrder", json={"order_id": "order-1", "customer_id": "ada"}
        )
        assert placed.status_code == 200, placed.text
        for n in range(5):
            added = await commands.post(
                "/commands/AddLine",
                json={"order_id": "order-1", "sku": f"s{n}", "quantity": 2, "unit_price_cents": 5},
            )
            token = added.headers["Eventfold-Position"]
            assert added.json()["position"] == int(token)
            answer = await queries.get(
                "/queries/order",
                params={"order_id": "order-1"},
                headers={"Eventfold-Min-Position": token},
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["rows"][0]["lines"] == n + 1
            assert body["freshness"]["position"] >= int(token)
            assert int(answer.headers["Eventfold-Position"]) >= int(token)
            assert set(body["freshness"]) >= {
                "head",
                "events_behind",
                "seconds_behind",
                "bus_pending",
            }


async def test_statuses_for_conflicts_rejections_and_timeouts(tmp_path: Path) -> None:
    async with services(tmp_path) as (commands, queries, runtime):
        await commands.post(
            "/commands/PlaceOrder", json={"order_id": "order-1", "customer_id": "a"}
        )
        again = await commands.post(
            "/commands/PlaceOrder", json={"order_id": "order-1", "customer_id": "b"}
        )
        assert again.status_code == 422 and again.json()["error"]["type"] == "OrderRejected"
        stale = await commands.post(
            "/commands/AddLine",
            json={"order_id": "order-1", "sku": "x", "quantity": 1, "unit_price_cents": 1},
            headers={"Eventfold-Expected-Version": "0"},
        )
        assert stale.status_code == 409
        assert stale.json()["error"]["detail"]["actual"] == 1
        late = await queries.get(
            "/queries/order", params={"order_id": "order-1", "min_position": 999, "wait": 0.2}
        )
        assert late.status_code == 503 and late.headers["Retry-After"] == "1"
        assert late.json()["error"] == "ReadModelTimeout"
        history = await queries.get("/streams/order-1/events?min_position=999&wait=0.1")
        assert history.status_code == 503
        missing = await queries.get("/queries/nope")
        assert missing.status_code == 404
        assert (await queries.get("/streams/basket-1/state")).status_code == 404
        bad = await queries.get("/queries/low_stock", params={"threshold": "many"})
        assert bad.status_code == 422
        assert (await queries.get("/queries/order")).status_code == 422
        assert await head(runtime) == 1


async def test_bad_requests_get_clear_4xx_and_write_nothing(tmp_path: Path) -> None:
    async with services(tmp_path, max_body_size=2048) as (commands, _, runtime):
        cases = [
            ("/commands/PlaceOrder", b'{"order_id": "order-1", ', 400, "InvalidCommand"),
            ("/commands/PlaceOrder", b'{"order_id": ' + b"[" * 1500, 400, "InvalidCommand"),
            (
                "/commands/PlaceOrder",
                b'{"x": ' + b"[" * 900 + b"]" * 900 + b"}",
                400,
                "InvalidCommand",
            ),
            ("/commands/PlaceOrder", b"\xff\xfe", 400, "InvalidCommand"),
            (
                "/commands/PlaceOrder",
                b'{"order_id": "\xc3(", "customer_id": "a"}',
                400,
                "InvalidCommand",
            ),
            (
                "/commands/PlaceOrder",
                b'{"order_id": 7, "customer_id": "a"}',
                422,
                "InvalidCommand",
            ),
            (
                "/commands/PlaceOrder",
                b'{"order_id": "x", "customer_id": "a"}',
                422,
                "InvalidCommand",
            ),
            ("/commands/PlaceOrder", b"[]", 422, "InvalidCommand"),
            ("/commands/PlaceOrder", b"", 400, "InvalidCommand"),
            (
                "/commands/PlaceOrder",
                b'{"order_id": "order-1", "customer_id": "order-1"}',
                422,
                "InvalidCommand",
            ),
            ("/commands/DropTables", b"{}", 404, "UnknownCommand"),
            (
                "/commands/PlaceOrder",
                b'{"order_id": "order-1", "customer_id": "' + b"a" * 4096 + b'"}',
                413,
                "RequestEntityTooLarge",
            ),
        ]
        for path, body, status, error in cases:
            response = await commands.post(
                path, content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == status, (body[:40], response.text)
            assert response.json()["error"] == error, response.text
        key = await commands.post(
            "/commands/PlaceOrder",
            json={"order_id": "order-1", "customer_id": "a"},
            headers={"Idempotency-Key": "\x01"},
        )
        assert key.status_code == 422
        assert await head(runtime) == 0
        assert runtime.outcomes is not None
        assert await runtime.outcomes.pending(older_than=0) == []


async def test_a_retried_command_returns_the_first_outcome_and_writes_nothing(
    tmp_path: Path,
) -> None:
    async with services(tmp_path) as (commands, _, runtime):
        body = {"order_id": "order-9", "customer_id": "ada"}
        first = await commands.post(
            "/commands/PlaceOrder", json=body, headers={"Idempotency-Key": "p9"}
        )
        retried = await commands.post(
            "/commands/PlaceOrder", json=body, headers={"Idempotency-Key": "p9"}
        )
        assert first.status_code == retried.status_code == 200
        assert retried.json() == first.json()
        reused = await commands.post(
            "/commands/PlaceOrder",
            json={"order_id": "order-8", "customer_id": "ada"},
            headers={"Idempotency-Key": "p9"},
        )
        assert reused.status_code == 422 and reused.json()["error"] == "IdempotencyKeyReused"
        assert await head(runtime) == 1


async def test_asynchronous_commands_answer_202_and_their_outcome_by_id(tmp_path: Path) -> None:
    async with services(tmp_path) as (commands, queries, _):
        accepted = await commands.post(
            "/commands/ReceiveStock",
            json={"sku": "fig", "quantity": 4},
            headers={"Prefer": "respond-async", "Idempotency-Key": "fig-4"},
        )
        assert accepted.status_code == 202
        command_id = accepted.json()["command_id"]
        assert accepted.headers["Location"] == f"/outcomes/{command_id}"
        done = await commands.get(f"/outcomes/{command_id}", params={"wait": 5})
        assert done.status_code == 200 and done.json()["status"] == "succeeded"
        token = done.headers["Eventfold-Position"]
        stock = await queries.get("/queries/stock", params={"min_position": token})
        assert stock.json()["rows"] == [{"sku": "fig", "on_hand": 4, "reserved": 0, "available": 4}]
        again = await commands.post(
            "/commands/ReceiveStock",
            json={"sku": "fig", "quantity": 4},
            headers={"Prefer": "respond-async", "Idempotency-Key": "fig-4"},
        )
        assert again.json()["command_id"] == command_id
        assert (await commands.get("/outcomes/nope")).status_code == 404


async def test_history_and_state_as_of_a_time(tmp_path: Path) -> None:
    async with services(tmp_path) as (commands, queries, _):
        await commands.post(
            "/commands/PlaceOrder", json={"order_id": "order-3", "customer_id": "c"}
        )
        line = {"order_id": "order-3", "sku": "fig", "quantity": 1, "unit_price_cents": 9}
        await commands.post("/commands/AddLine", json=line)
        await asyncio.sleep(0.01)
        moment = datetime.now(UTC)
        await asyncio.sleep(0.01)
        last = await commands.post("/commands/AddLine", json={**line, "sku": "kiwi"})
        token = last.headers["Eventfold-Position"]
        history = await queries.get("/streams/order-3/events", params={"min_position": token})
        assert [e["type"] for e in history.json()["events"]] == [
            "OrderPlaced",
            "OrderLineAdded",
            "OrderLineAdded",
        ]
        now = await queries.get("/streams/order-3/state", params={"min_position": token})
        assert len(now.json()["state"]["lines"]) == 2
        then = await queries.get("/streams/order-3/state", params={"as_of": moment.isoformat()})
        assert then.status_code == 200, then.text
        assert then.json()["version"] == 2 and len(then.json()["state"]["lines"]) == 1
        # A time without a zone is UTC, as for `eventfold at --time`.
        naive = moment.astimezone(UTC).replace(tzinfo=None).isoformat()
        same = await queries.get("/streams/order-3/state", params={"as_of": naive})
        assert same.status_code == 200, same.text
        assert same.json()["version"] == 2 and same.json()["state"] == then.json()["state"]
        day = await queries.get("/streams/order-3/state", params={"as_of": "2024-01-01"})
        assert day.json()["version"] == 0  # a date alone is its start
        bad = await queries.get("/streams/order-3/state", params={"as_of": "yesterday"})
        assert bad.status_code == 422 and bad.json()["extra"]["argument"] == "as_of"
        clock = await queries.get("/streams/order-3/state", params={"as_of": naive, "by": "x"})
        assert clock.status_code == 422


async def settled(runtime: Runtime) -> None:
    """Wait until every projection has reached the head (nothing moves after)."""
    assert runtime.runner is not None
    await runtime.runner.wait_for(await head(runtime), timeout=5)


async def test_answers_are_cached_until_a_projection_moves(tmp_path: Path) -> None:
    async with services(tmp_path, cache_ttl=30.0) as (commands, queries, runtime):
        first = await commands.post("/commands/ReceiveStock", json={"sku": "fig", "quantity": 1})
        token = first.headers["Eventfold-Position"]
        await settled(runtime)
        miss = await queries.get("/queries/stock", params={"min_position": token})
        hit = await queries.get("/queries/stock")
        assert (miss.headers["Eventfold-Cache"], hit.headers["Eventfold-Cache"]) == ("miss", "hit")
        assert hit.json()["rows"] == miss.json()["rows"]
        second = await commands.post("/commands/ReceiveStock", json={"sku": "fig", "quantity": 2})
        moved = await queries.get(
            "/queries/stock", params={"min_position": second.headers["Eventfold-Position"]}
        )
        assert moved.headers["Eventfold-Cache"] == "miss"
        assert moved.json()["rows"][0]["on_hand"] == 3


async def test_openapi_documents_both_apps_from_the_same_types(tmp_path: Path) -> None:
    async with services(tmp_path) as (commands, queries, _):
        spec = (await commands.get("/schema/openapi.json")).json()
        place = spec["paths"]["/commands/PlaceOrder"]["post"]
        ref = place["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        assert set(schema["properties"]) == {"order_id", "customer_id"}
        assert {p["name"] for p in place["parameters"]} >= {"Idempotency-Key", "Prefer"}
        listed = (await commands.get("/commands")).json()
        assert "AddLine" in {c["name"] for c in listed}
        qspec = (await queries.get("/schema/openapi.json")).json()
        low = qspec["paths"]["/queries/low_stock"]["get"]
        assert {p["name"] for p in low["parameters"]} >= {"threshold", "min_position"}
        status = (await queries.get("/status")).json()
        assert {p["name"] for p in status["projections"]} == {"order_summaries", "stock_levels"}
