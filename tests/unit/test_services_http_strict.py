"""The command API decodes every body strictly with the command's own type,
answers bad bodies with one typed error shape, and its documentation pages
need no network."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_services_http import head, services

GOOD_LINE: dict[str, Any] = {
    "order_id": "order-1",
    "sku": "apple",
    "quantity": 3,
    "unit_price_cents": 45,
}


def line(**raw: str) -> bytes:
    """AddLine's JSON, the named fields replaced by raw JSON text."""
    fields = {name: json.dumps(value) for name, value in GOOD_LINE.items()} | raw
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode()


# (command, body, the field the error names): every field kind docs/services.md
# names: wrong type (no coercion of strings, floats or bools to ints), missing,
# out of range, unknown field, pattern, length.
WRONG_BODIES = [
    ("AddLine", line(quantity='"10"'), "quantity"),
    ("AddLine", line(quantity='"1e1"'), "quantity"),
    ("AddLine", line(quantity="10.0"), "quantity"),
    ("AddLine", line(quantity="1e1"), "quantity"),
    ("AddLine", line(quantity="true"), "quantity"),
    ("AddLine", line(quantity="null"), "quantity"),
    ("AddLine", line(quantity="[3]"), "quantity"),
    ("AddLine", line(unit_price_cents='"45"'), "unit_price_cents"),
    ("AddLine", line(quantity="0"), "quantity"),
    ("AddLine", line(quantity="1000001"), "quantity"),
    ("AddLine", line(unit_price_cents="-1"), "unit_price_cents"),
    ("AddLine", line(sku='"Not A Sku"'), "sku"),
    ("AddLine", line(order_id="7"), "order_id"),
    ("AddLine", line(order_id='"basket-1"'), "order_id"),
    ("AddLine", b'{"order_id": "order-1", "sku": "apple", "quantity": 3}', None),
    ("AddLine", line(colour='"red"'), None),
    ("PlaceOrder", b'{"order_id": "order-1", "customer_id": ""}', "customer_id"),
    ("PlaceOrder", b'{"order_id": "order-1", "customer_id": "' + b"a" * 101 + b'"}', "customer_id"),
    ("CancelOrder", b'{"order_id": "order-1", "reason": 5}', "reason"),
    ("ReceiveStock", b'{"sku": "apple", "quantity": 2.5}', "quantity"),
]


@pytest.mark.parametrize(("command", "body", "field"), WRONG_BODIES)
async def test_bodies_that_do_not_fit_the_command_type_get_422_and_write_nothing(
    tmp_path: Path, command: str, body: bytes, field: str | None
) -> None:
    async with services(tmp_path) as (commands, _, runtime):
        answer = await commands.post(f"/commands/{command}", content=body)
        assert answer.status_code == 422, (body, answer.text)
        error = answer.json()
        assert error["status_code"] == 422
        assert error["error"] == "InvalidCommand"
        assert error["extra"]["name"] == command
        assert error["extra"]["argument"] == "body"
        assert error["extra"].get("field") == field
        assert await head(runtime) == 0


async def test_a_body_of_the_right_types_is_accepted(tmp_path: Path) -> None:
    async with services(tmp_path) as (commands, _, runtime):
        placed = await commands.post(
            "/commands/PlaceOrder", content=b'{"order_id": "order-1", "customer_id": "ada"}'
        )
        assert placed.status_code == 200, placed.text
        added = await commands.post("/commands/AddLine", content=line())
        assert added.status_code == 200, added.text
        assert await head(runtime) == 2


@pytest.mark.parametrize("depth", [101, 10_000, 100_000])
async def test_deeply_nested_bodies_get_400_with_the_typed_body(tmp_path: Path, depth: int) -> None:
    body = b'{"order_id": ' + b"[" * depth + b"]" * depth + b"}"
    async with services(tmp_path) as (commands, _, runtime):
        answer = await commands.post("/commands/PlaceOrder", content=body)
        assert answer.status_code == 400, answer.text
        error = answer.json()
        assert error["error"] == "InvalidCommand"
        assert "nested deeper than 100 levels" in error["detail"]
        assert await head(runtime) == 0


async def test_a_conflict_has_one_type_per_field_as_documented(tmp_path: Path) -> None:
    async with services(tmp_path) as (commands, _, _runtime):
        await commands.post("/commands/ReceiveStock", json={"sku": "apple", "quantity": 10})
        conflict = await commands.post(
            "/commands/ReceiveStock",
            json={"sku": "apple", "quantity": 1},
            headers={"Eventfold-Expected-Version": "0"},
        )
        assert conflict.status_code == 409
        detail = conflict.json()["error"]["detail"]
        assert detail == {"stream_id": "stock-apple", "expected": 0, "actual": 1}
        spec = (await commands.get("/schema/openapi.json")).json()
        schemas = spec["components"]["schemas"]
        response = spec["paths"]["/commands/ReceiveStock"]["post"]["responses"]["409"]
        outcome = response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        error = _resolve(schemas, schemas[outcome]["properties"]["error"])
        fields = _resolve(schemas, error["properties"]["detail"])["properties"]
        for name, kind in (
            ("stream_id", "string"),
            ("expected", "integer"),
            ("actual", "integer"),
            ("argument", "string"),
        ):
            assert _types(schemas, fields[name]) <= {kind, "null"}, (name, fields[name])


def _resolve(schemas: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    for option in schema.get("oneOf", [schema]):
        if "$ref" in option:
            return schemas[option["$ref"].rsplit("/", 1)[-1]]  # type: ignore[no-any-return]
    return schema


def _types(schemas: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    options = schema.get("oneOf", [schema])
    return {
        t
        for o in options
        for t in ([o["type"]] if isinstance(o.get("type"), str) else o.get("type", []))
    }


async def test_unknown_queries_and_unknown_commands_answer_with_one_shape(tmp_path: Path) -> None:
    async with services(tmp_path) as (commands, queries, _):
        command = await commands.post("/commands/ShipOrder", json={})
        query = await queries.get("/queries/best_sellers")
        for answer, error, name in (
            (command, "UnknownCommand", "ShipOrder"),
            (query, "UnknownQuery", "best_sellers"),
        ):
            assert answer.status_code == 404
            body = answer.json()
            assert set(body) == {"status_code", "error", "detail", "extra"}
            assert body["error"] == error
            assert set(body["extra"]) == {"name", "known"}
            assert body["extra"]["name"] == name
            assert body["extra"]["known"]
        assert "order" in query.json()["extra"]["known"]
        assert "PlaceOrder" in command.json()["extra"]["known"]


_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/schema", "/schema/redoc", "/schema/swagger"])
async def test_documentation_pages_load_everything_from_the_app(tmp_path: Path, page: str) -> None:
    async with services(tmp_path) as (commands, queries, _):
        for client in (commands, queries):
            html = await client.get(page)
            assert html.status_code == 200
            assert "http://" not in html.text and "https://" not in html.text
            references = _REFERENCE.findall(html.text)
            assert references  # the page's scripts (and styles)
            for url in references:
                asset = await client.get(url)
                assert asset.status_code == 200, url
                assert len(asset.content) > 10_000, url
                kind = "text/css" if url.endswith(".css") else "javascript"
                assert kind in asset.headers["content-type"], (url, asset.headers)
