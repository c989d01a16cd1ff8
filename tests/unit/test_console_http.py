"""The console, the operator's admin routes and /metrics over HTTP (ASGI,
in this process): console pages need a logged-in session, every action its
CSRF token, its origin and its permission, and a principal that may only
read sees no action and changes nothing, even posting the form itself;
/metrics parses with Prometheus's parser, its counters move, and a
projection's lag falls to 0 once it has caught up."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from eventfold import Codec
from eventfold.examples.shop.events import CustomerRegistered, registry
from eventfold.messaging import Message
from tests.security_helpers import bearer, hs256
from tests.unit.test_services_http import services
from tests.unit.test_services_security import Served, secured

ACTIONS = (
    "/console/projections/order_summaries/rebuild",
    "/console/projections/order_summaries/pause",
    "/console/projections/order_summaries/resume",
    "/console/parked/1/retry",
    "/console/parked/1/skip",
    "/console/verify",
)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


async def login(s: Served, key: str) -> tuple[httpx.AsyncClient, str]:
    """A browser-like client of the query API, logged in with ``key``."""
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(s.apps["query"]), base_url="http://queries"
    )
    page = await client.get("/console/login")
    answer = await client.post("/console/login", data={"csrf": csrf_of(page), "credential": key})
    assert answer.status_code == 303, answer.text
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    return client, csrf_of(await client.get("/console/projections"))


async def snapshot(s: Served) -> tuple[Any, ...]:
    """What an action would change: pauses, builds, operations, parked messages."""
    runner, mirror = s.runtime.runner, s.runtime.mirror
    assert runner is not None and mirror is not None
    builds = [(st.name, st.active, st.others) for st in await runner.status()]
    return (
        await runner.paused(),
        builds,
        s.runtime.operations.latest(),
        await mirror.parked(),
    )


async def park_junk(s: Served) -> None:
    """A message on the events stream that is not an event: it gets parked."""
    assert s.runtime.bus is not None and s.runtime.mirror is not None
    stream = s.runtime.topology.events_stream
    await s.runtime.bus.publish(stream, [Message(f"{s.runtime.topology.prefix}.x.Junk", b"junk")])
    for _ in range(400):
        if await s.runtime.mirror.parked():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the junk message was not parked")


async def test_console_needs_a_session_and_its_actions_a_token_an_origin_and_a_permission(
    tmp_path: Path,
) -> None:
    async with secured(tmp_path) as s:
        store = s.runtime.store
        assert store is not None
        await s.commands.post(
            "/commands/PlaceOrder",
            json={"order_id": "order-1", "customer_id": "ada"},
            headers=bearer(hs256()),
        )
        await park_junk(s)
        anonymous = httpx.AsyncClient(
            transport=httpx.ASGITransport(s.apps["query"]), base_url="http://queries"
        )
        for path in ("/console/", "/console/streams", "/console/projections", "/console/verify"):
            answer = await anonymous.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
        page = await anonymous.get("/console/login")
        refused = await anonymous.post(
            "/console/login", data={"csrf": csrf_of(page), "credential": "efk_nope_nope"}
        )
        assert refused.status_code == 401

        reader, reader_csrf = await login(s, s.api_keys["ana"])  # clerk: reads, no actions
        pages = await reader.get("/console/projections")
        assert pages.status_code == 200 and "order_summaries" in pages.text
        assert "/pause" not in pages.text and "/rebuild" not in pages.text
        parked = await reader.get("/console/parked")
        assert "/retry" not in parked.text and "/skip" not in parked.text
        before = await snapshot(s)
        for path in ACTIONS:
            answer = await reader.post(path, data={"csrf": reader_csrf})
            assert answer.status_code == 403, (path, answer.text)
        assert await snapshot(s) == before
        await reader.aclose()

        ops, ops_csrf = await login(s, s.api_keys["olga"])
        page = await ops.get("/console/projections")
        assert "/pause" in page.text and "/rebuild" in page.text
        pause = "/console/projections/order_summaries/pause"
        for data, headers in (
            ({}, {}),
            ({"csrf": "forged"}, {}),
            ({"csrf": ops_csrf}, {"Origin": "https://evil.example"}),
            ({"csrf": ops_csrf}, {"Sec-Fetch-Site": "cross-site"}),
        ):
            answer = await ops.post(pause, data=data, headers=headers)
            assert answer.status_code == 403, (data, headers)
        assert await snapshot(s) == before
        done = await ops.post(pause, data={"csrf": ops_csrf}, headers={"Origin": "http://queries"})
        assert done.status_code == 303
        assert s.runtime.runner is not None
        assert (await s.runtime.runner.paused())["order_summaries"].paused_by == "olga"
        assert "order_summaries paused" in (await ops.get("/console/projections")).text
        await ops.post("/console/projections/order_summaries/resume", data={"csrf": ops_csrf})
        assert await s.runtime.runner.paused() == {}
        await ops.aclose()


async def test_admin_routes_pause_resume_retry_skip_need_their_permissions(tmp_path: Path) -> None:
    async with secured(tmp_path) as s:
        admin = bearer(hs256(sub="olga", roles=["admin"]))
        clerk = bearer(hs256())
        await park_junk(s)
        listed = await s.queries.get("/admin/parked", headers=clerk)
        assert listed.status_code == 200
        (junk,) = listed.json()
        assert junk["reason"].startswith("not an event") and junk["body"] == "junk"
        seq = junk["seq"]
        for path in (
            "/admin/projections/order_summaries/pause",
            "/admin/projections/order_summaries/resume",
            f"/admin/parked/{seq}/retry",
            f"/admin/parked/{seq}/skip",
        ):
            assert (await s.queries.post(path, headers=clerk)).status_code == 403, path
        paused = await s.queries.post("/admin/projections/order_summaries/pause", headers=admin)
        assert paused.status_code == 200 and paused.json()["paused_by"] == "olga"
        status = (await s.queries.get("/status", headers=admin)).json()
        states = {p["name"]: p["state"] for p in status["projections"]}
        assert states["order_summaries"] == "paused"
        resumed = await s.queries.post("/admin/projections/order_summaries/resume", headers=admin)
        assert resumed.status_code == 200 and resumed.json()["paused"] is False
        unknown = await s.queries.post("/admin/projections/nope/pause", headers=admin)
        assert unknown.status_code == 404
        retried = await s.queries.post(f"/admin/parked/{seq}/retry", headers=admin)
        assert retried.status_code == 200 and retried.json()["outcome"] == "parked"
        skipped = await s.queries.post(f"/admin/parked/{seq}/skip", headers=admin)
        assert skipped.status_code == 200 and skipped.json()["skipped"] is True
        again = await s.queries.post(f"/admin/parked/{seq}/skip", headers=admin)
        assert again.status_code == 404 and again.json()["error"] == "NotParked"
        assert (await s.queries.get("/admin/parked", headers=admin)).json() == []


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_parse_counters_move_and_lag_falls_to_zero_after_catch_up(
    tmp_path: Path,
) -> None:
    async with services(tmp_path) as (commands, queries, runtime):
        for client in (commands, queries):
            answer = await client.get("/metrics")
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain")
        before = parse((await queries.get("/metrics")).text)
        assert runtime.runner is not None
        # Paused once its first build is there: a projection with no build yet has no lag.
        await runtime.runner.wait_for(0, timeout=60, projections=["stock_levels"])
        await runtime.runner.pause("stock_levels", by="test")
        for n in range(3):
            placed = await commands.post(
                "/commands/ReceiveStock", json={"sku": f"s{n}", "quantity": 2}
            )
            assert placed.status_code == 200
        token = placed.json()["position"]
        await queries.get("/queries/order", params={"order_id": "x", "min_position": token})
        during = parse((await queries.get("/metrics")).text)
        appended = value(
            during,
            "eventfold_events_appended_total",
            backend="eventfold.memory",
            type="StockReceived",
        ) - value(
            before,
            "eventfold_events_appended_total",
            backend="eventfold.memory",
            type="StockReceived",
        )
        assert appended == 3
        handled = value(
            during, "eventfold_commands_total", command="ReceiveStock", status="succeeded"
        ) - value(before, "eventfold_commands_total", command="ReceiveStock", status="succeeded")
        assert handled == 3
        read = value(during, "eventfold_events_read_total", backend="eventfold.mirror") - value(
            before, "eventfold_events_read_total", backend="eventfold.mirror"
        )
        assert read > 0
        lag = {"tenant": "", "projection": "stock_levels"}
        assert value(during, "eventfold_projection_lag_events", **lag) == 3
        assert value(during, "eventfold_projection_state", **lag, state="paused") == 1
        assert (
            value(
                during, "eventfold_projection_lag_events", tenant="", projection="order_summaries"
            )
            == 0
        )
        requests = value(
            during,
            "eventfold_http_request_duration_seconds_count",
            service="command",
            method="POST",
            route="/commands/ReceiveStock",
            status="200",
        )
        assert requests >= 3
        await runtime.runner.resume("stock_levels")
        await runtime.runner.wait_for(token, timeout=10)
        after = parse((await queries.get("/metrics")).text)
        assert value(after, "eventfold_projection_lag_events", **lag) == 0
        assert value(after, "eventfold_projection_lag_seconds", **lag) == 0
        assert value(after, "eventfold_projection_position", **lag) >= token
        assert value(after, "eventfold_projection_state", **lag, state="running") == 1
        assert value(after, "eventfold_relay_lag_events", tenant="") == 0
        assert value(after, "eventfold_bus_pending_messages", tenant="") == 0
        assert value(after, "eventfold_parked_messages", tenant="") == 0


async def test_a_forgotten_subjects_personal_fields_show_as_redacted(tmp_path: Path) -> None:
    async with secured(tmp_path, encrypt=True, master_key_env=None) as s:
        store, mirror = s.runtime.store, s.runtime.mirror
        assert store is not None and mirror is not None
        codec = Codec(registry)
        registered = CustomerRegistered("ada", "Ada Lovelace", "ada@example.com")
        written = await store.append("customer-ada", [codec.encode(registered)])
        for _ in range(400):
            if await mirror.head_position() >= written.position:
                break
            await asyncio.sleep(0.025)
        client, _ = await login(s, s.api_keys["olga"])
        before = await client.get("/console/streams/customer-ada")
        assert "ada@example.com" in before.text and "redacted" not in before.text
        assert await s.runtime.forget("ada") == 1
        after = await client.get("/console/streams/customer-ada")
        assert after.status_code == 200
        assert "ada@example.com" not in after.text and "Ada Lovelace" not in after.text
        assert "2 fields redacted" in after.text and after.text.count("[redacted]") >= 2
        await client.aclose()
