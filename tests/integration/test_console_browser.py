"""The operations console in a real browser (Debian's chromium, headless,
driven by Playwright): every page loads with no console error; a rebuild
started from the console completes, with its progress shown; a parked
message retried from the console is applied; a principal that may only
read sees no action and cannot trigger one even by posting the form
itself. Screenshots of each page go to docs/console/ (written when
missing, or all again with ``EVENTFOLD_SCREENSHOTS=update``)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventfold import Codec, EventStore
from eventfold.examples.shop.events import LineAdded, OrderPlaced, StockReceived, registry
from eventfold.examples.shop.services import service
from eventfold.messaging import Topology, open_bus
from eventfold.messaging.wire import event_message
from eventfold.security import APIKeyAuthenticator, MemoryAPIKeyStore, Policy, Security, create_key
from eventfold.services import Runtime, ServeConfig
from eventfold.store.url import connect
from tests.browser_helpers import Served, chromium
from tests.security_helpers import POLICY

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


def screenshot(page: Any, name: str) -> None:
    """Keep a screenshot of ``page`` in docs/console/ (see the module docstring)."""
    path = SHOTS / f"{name}.png"
    if path.exists() and os.environ.get("EVENTFOLD_SCREENSHOTS") != "update":
        data = page.screenshot(full_page=True)
    else:
        SHOTS.mkdir(exist_ok=True)
        data = page.screenshot(path=str(path), full_page=True)
    assert len(data) > 10_000  # a page was drawn, not a blank


class Errors:
    """Every console error and uncaught exception of the pages of a context."""

    def __init__(self, context: Any) -> None:
        self.found: list[str] = []
        context.on("console", self._console)
        context.on("weberror", lambda error: self.found.append(f"uncaught: {error.error}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.found.append(f"{message.location.get('url')}: {message.text}")


def log_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/console/login")
    page.fill("#credential", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/")


async def _seed(base: str, key: str) -> int:
    headers = {"X-API-Key": key}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=20) as commands:
        sent = [
            ("ReceiveStock", {"sku": "apple", "quantity": 10}),
            ("ReceiveStock", {"sku": "pear", "quantity": 4}),
            ("PlaceOrder", {"order_id": "order-1001", "customer_id": "ada"}),
            (
                "AddLine",
                {"order_id": "order-1001", "sku": "apple", "quantity": 3, "unit_price_cents": 45},
            ),
            (
                "AddLine",
                {"order_id": "order-1001", "sku": "pear", "quantity": 2, "unit_price_cents": 80},
            ),
            ("SubmitOrder", {"order_id": "order-1001"}),
            ("PlaceOrder", {"order_id": "order-1001", "customer_id": "bo"}),  # rejected
        ]
        sent += [("PlaceOrder", {"order_id": f"order-{n}", "customer_id": "cy"}) for n in range(40)]
        position = 0
        for name, body in sent:
            answer = await commands.post(f"/commands/{name}", json=body)
            assert answer.status_code in (200, 422), answer.text
            position = max(position, answer.json().get("position") or 0)
        return position


def test_every_page_loads_a_rebuild_shows_its_progress_and_a_reader_cannot_act(
    tmp_path: Path,
) -> None:
    keys = MemoryAPIKeyStore()
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    security = Security([APIKeyAuthenticator(keys)], Policy.from_file(policy))
    config = ServeConfig(
        store=f"sqlite:///{tmp_path / 'events.db'}",
        read_model=f"sqlite:///{tmp_path / 'reads.db'}",
        poll_interval=0.05,
    )
    with Served(service, config, security=security) as served:
        ops = served.call(lambda _: create_key(keys, "olga", roles=["admin"]))[1]
        reader = served.call(lambda _: create_key(keys, "ana", roles=["clerk"]))[1]
        head = asyncio.run(_seed(served.urls["command"], ops))

        async def caught_up(runtime: Runtime) -> int:
            assert runtime.runner is not None
            await runtime.runner.wait_for(head, timeout=30)
            # The checkout saga's own commands land a little later: wait for them too.
            assert runtime.store is not None and runtime.query is not None
            for _ in range(400):
                last = await runtime.store.head_position()
                if await runtime.query.store.head_position() >= last and last > head:
                    break
                await asyncio.sleep(0.05)
            await runtime.runner.wait_for(await runtime.store.head_position(), timeout=30)
            return await runtime.store.head_position()

        served.call(caught_up)
        base = served.urls["query"]
        with chromium() as context:
            errors = Errors(context)
            page = context.new_page()
            page.goto(f"{base}/console/")
            assert page.url == f"{base}/console/login"
            screenshot(page, "login")
            log_in(page, base, ops)
            assert "Events per minute" in page.content()
            screenshot(page, "overview")

            page.goto(f"{base}/console/streams?category=order")
            assert page.locator("a", has_text="order-1001").count() == 1
            screenshot(page, "streams")
            page.fill("#q", "order-1001")
            page.click("form.search button")
            page.wait_for_url(f"{base}/console/streams/order-1001")
            page.goto(f"{base}/console/streams/order-1001?version=3")
            assert '"lines"' in page.content() and "OrderConfirmed" in page.content()
            screenshot(page, "stream")
            page.click("text=OrderSubmitted")
            tree = page.locator("ul.tree")
            assert tree.locator("text=command SubmitOrder").count() == 1
            assert tree.locator("a", has_text="StockReserved").count() >= 2  # the saga's steps
            assert tree.locator("a", has_text="OrderConfirmed").count() == 1
            screenshot(page, "event")

            page.goto(f"{base}/console/commands")
            assert page.locator("span.state.rejected").count() >= 1
            screenshot(page, "commands")

            # A rebuild started from the console completes, its progress shown.
            page.goto(f"{base}/console/projections")
            page.click("#p-order_summaries button:has-text('Rebuild')")
            page.wait_for_url(f"{base}/console/projections")
            done = page.locator("[data-operation]", has=page.locator("text=done"))
            done.first.wait_for(timeout=30_000)
            assert page.locator("text=build 2 serving").count() == 1
            progress = done.first
            assert progress.locator("progress").get_attribute("value") == "100.0"
            handled = int(progress.locator("[data-field=handled]").inner_text())
            assert handled == served.call(order_events)
            screenshot(page, "projections")

            page.goto(f"{base}/console/verify")
            page.click("button:has-text('Run the check')")
            page.locator("text=every chain intact").wait_for(timeout=30_000)
            screenshot(page, "verify")
            page.goto(f"{base}/console/parked")
            assert "Nothing is parked" in page.content()
            assert errors.found == []

            # A principal that may only read: no buttons, and posting the form
            # itself (with its own valid token) is refused and changes nothing.
            page.click("text=Log out")
            log_in(page, base, reader)
            before = served.call(operator_state)
            page.goto(f"{base}/console/projections")
            assert page.locator("form button").count() == 1  # logging out
            token = page.locator("input[name=csrf]").first.get_attribute("value")
            for action in ("pause", "rebuild", "resume"):
                answer = page.request.post(
                    f"{base}/console/projections/order_summaries/{action}", form={"csrf": token}
                )
                assert answer.status == 403, (action, answer.text())
            page.goto(f"{base}/console/parked")
            assert page.locator("form button").count() == 1
            assert served.call(operator_state) == before
            assert errors.found == []


async def order_events(runtime: Runtime) -> int:
    assert runtime.query is not None
    return len([r async for r in runtime.query.store.read_all(categories=["order"])])


async def operator_state(runtime: Runtime) -> tuple[Any, ...]:
    assert runtime.runner is not None
    builds = [(s.name, s.active, s.others) for s in await runtime.runner.status()]
    return (await runtime.runner.paused(), builds, len(runtime.operations.latest()))


async def _publish_out_of_order(nats_url: str, prefix: str) -> None:
    """Real events of a store, published as a relay with a bug would: the
    fourth before the third."""
    codec = Codec(registry)
    store: EventStore
    async with connect("memory://") as store:
        await store.append("order-7", [codec.encode(OrderPlaced("order-7", "ada"))])
        await store.append("stock-apple", [codec.encode(StockReceived("apple", 10))])
        await store.append("order-7", [codec.encode(LineAdded("apple", 3, 45))])
        await store.append("stock-pear", [codec.encode(StockReceived("pear", 4))])
        records = [r async for r in store.read_all()]
    topology = Topology(prefix)
    bus = open_bus(nats_url)
    try:
        await bus.ensure_stream(topology.events_spec())
        messages = [event_message(topology, records[i]) for i in (0, 1, 3, 2)]
        await bus.publish(topology.events_stream, messages)
    finally:
        await bus.close()


def test_a_parked_message_retried_from_the_console_is_applied(
    nats_url: str, nats_prefix: str, tmp_path: Path
) -> None:
    config = ServeConfig(
        role="query",
        nats=nats_url,
        prefix=nats_prefix,
        read_model=f"sqlite:///{tmp_path / 'reads.db'}",
        poll_interval=0.05,
    )
    with Served(service, config) as served:
        asyncio.run(_publish_out_of_order(nats_url, nats_prefix))

        async def parked(runtime: Runtime) -> list[int]:
            assert runtime.mirror is not None and runtime.runner is not None
            for _ in range(600):
                found = await runtime.mirror.parked()
                if found:
                    await runtime.runner.wait_for(4, timeout=30)
                    return [p.seq for p in found]
                await asyncio.sleep(0.05)
            raise AssertionError("nothing was parked")

        assert served.call(parked) == [4]
        assert served.call(lines_of_order_7) == 0
        base = served.urls["query"]
        with chromium() as context:
            errors = Errors(context)
            page = context.new_page()
            page.goto(f"{base}/console/parked")
            row = page.locator("#m-4")
            assert "out of order" in row.locator(".reason").inner_text()
            screenshot(page, "parked")
            row.locator("button:has-text('Retry')").click()
            page.wait_for_url(f"{base}/console/parked")
            flash = page.locator(".flash").inner_text()
            assert re.search(
                r"message #4 applied at position 3; rebuilding .*order_summaries", flash
            )
            assert "Nothing is parked" in page.content()
            assert page.locator("td", has_text="applied at position 3").count() == 1
            page.goto(f"{base}/console/projections")
            page.locator("text=build 2 serving").first.wait_for(timeout=30_000)
            assert errors.found == []
        assert served.call(lines_of_order_7) == 1


async def lines_of_order_7(runtime: Runtime) -> int:
    assert runtime.query is not None
    answer = await runtime.query.query("order", {"order_id": "order-7"})
    return int(answer.rows[0]["lines"]) if answer.rows else -1
