"""The HTTP apps with security on: every route refuses bad credentials with
401 and ``WWW-Authenticate``, a principal outside its policy gets 403 and
the store stays byte-for-byte unchanged, the audit actor is the principal,
and the OpenAPI documents declare the schemes."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from eventfold.examples.shop.services import service
from eventfold.security import (
    APIKeyAuthenticator,
    JWTAuthenticator,
    MemoryAPIKeyStore,
    Policy,
    Security,
    create_key,
)
from eventfold.services import Runtime, ServeConfig
from eventfold.services.server import apps
from eventfold.store.url import connect
from tests.security_helpers import (
    AUDIENCE,
    ISSUER,
    POLICY,
    SECRET,
    Keys,
    bearer,
    hs256,
    hs256_with_public_key,
    rs256,
    unsigned,
)


class Served:
    def __init__(
        self,
        commands: httpx.AsyncClient,
        queries: httpx.AsyncClient,
        runtime: Runtime,
        built: dict[str, Any],
        keys: Keys,
        api_keys: dict[str, str],
    ) -> None:
        self.commands = commands
        self.queries = queries
        self.runtime = runtime
        self.apps = built
        self.keys = keys
        self.api_keys = api_keys


@contextlib.asynccontextmanager
async def secured(tmp_path: Path, **config: Any) -> AsyncIterator[Served]:
    keys = Keys(tmp_path)
    store = MemoryAPIKeyStore()
    api_keys = {}
    for name, roles in (("ana", ["clerk"]), ("vic", ["viewer"]), ("olga", ["admin"])):
        api_keys[name] = (await create_key(store, name, roles=roles))[1]
    revoked, api_keys["revoked"] = await create_key(store, "rex", roles=["admin"])
    await store.revoke(revoked.key_id)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY)
    security = Security(
        [
            JWTAuthenticator(
                issuer=ISSUER, audience=AUDIENCE, secret=SECRET, jwks=str(keys.jwks_file)
            ),
            APIKeyAuthenticator(store),
        ],
        Policy.from_file(policy_file),
    )
    settings = ServeConfig(
        store=f"sqlite:///{tmp_path / 'events.db'}",
        read_model=f"sqlite:///{tmp_path / 'reads.db'}",
        poll_interval=0.05,
        max_wait=2.0,
        **config,
    )
    async with Runtime(service, settings) as runtime:
        built = apps(runtime, security=security)
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(built["command"]), base_url="http://commands"
            ) as commands,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(built["query"]), base_url="http://queries"
            ) as queries,
        ):
            yield Served(commands, queries, runtime, built, keys, api_keys)


def fingerprint(directory: Path) -> dict[str, Any]:
    """The event store's bytes (not its shared-memory index, which readers
    write) and every command outcome recorded (the sagas' checkpoints share
    that database and move on their own)."""
    found: dict[str, Any] = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.glob("events.db*"))
        if not p.name.endswith("-shm")
    }
    with contextlib.closing(sqlite3.connect(directory / "events-services.db")) as conn:
        found["outcomes"] = conn.execute(
            "SELECT * FROM eventfold_command_outcome ORDER BY command_id"
        ).fetchall()
    return found


def _concrete(path: str) -> str:
    return (
        path.replace("{name:str}", "PlaceOrder")
        .replace("{command_id:str}", "00000000-0000-0000-0000-000000000000")
        .replace("{stream_id:str}", "order-1")
        .replace("{subject:str}", "ada")
        .replace("{tenant:str}", "acme")
        .replace("{file_name:str}", "openapi.json")
        .replace("{path:path}", "x")
        .replace("{seq:int}", "1")
        .replace("{position:int}", "1")
        .replace("{op_id:int}", "1")
    )


def every_route(app: Any) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        for method in sorted(getattr(route, "methods", ())):
            if method in ("HEAD", "OPTIONS"):
                continue
            out.append((method, _concrete(route.path)))
    return out


async def test_bad_credentials_get_401_on_every_route(tmp_path: Path) -> None:
    async with secured(tmp_path) as s:
        clerk = bearer(hs256())
        placed = await s.commands.post(
            "/commands/PlaceOrder",
            json={"order_id": "order-1", "customer_id": "ada"},
            headers=clerk,
        )
        assert placed.status_code == 200, placed.text
        (tmp_path / "other").mkdir()
        other = Keys(tmp_path / "other")
        bad: dict[str, dict[str, str]] = {
            "none": {},
            "expired": bearer(hs256(exp=1_000_000)),
            "not yet valid": bearer(hs256(nbf=4_000_000_000)),
            "wrong audience": bearer(rs256(s.keys, aud="elsewhere")),
            "wrong issuer": bearer(rs256(s.keys, iss="https://evil.test")),
            "alg none": bearer(unsigned(roles=["admin"])),
            "signed by another key": bearer(rs256(other, roles=["admin"])),
            "tampered": bearer(rs256(s.keys)[:-4] + "AAAA"),
            "HS256 with the public key": bearer(hs256_with_public_key(s.keys)),
            "revoked API key": {"X-API-Key": s.api_keys["revoked"]},
            "unknown API key": {"X-API-Key": "efk_0123456789abcdef_" + "x" * 43},
            "malformed API key": {"X-API-Key": "hello"},
            "basic auth": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        }
        before = fingerprint(tmp_path)
        checked = 0
        for side, client in (("command", s.commands), ("query", s.queries)):
            for method, path in every_route(s.apps[side]):
                if path == "/health":
                    assert (await client.request(method, path)).status_code == 200
                    continue
                if path == "/console" or path.startswith("/console/"):
                    # The console's own sessions: no page without one, no
                    # action without its form's token (test_console_http.py).
                    for headers in bad.values():
                        answer = await client.request(method, path, headers=headers)
                        if path.startswith(("/console/static/", "/console/log")):
                            # Open: the style sheet, the login form, logging out.
                            assert answer.status_code in (200, 303, 403, 404), (path, answer.text)
                            continue
                        expected = 303 if method == "GET" else 403
                        assert answer.status_code == expected, (method, path, answer.text)
                    continue
                for case, headers in bad.items():
                    answer = await client.request(
                        method, path, headers=headers, content=b'{"order_id": "order-9"}'
                    )
                    assert answer.status_code == 401, (side, method, path, case, answer.text)
                    challenge = answer.headers["WWW-Authenticate"]
                    assert 'Bearer realm="eventfold"' in challenge and "ApiKey" in challenge
                    assert answer.json()["error"] == "AuthenticationFailed"
                    checked += 1
        assert checked > 200
        assert fingerprint(tmp_path) == before
        assert await s.runtime.store.head_position() == 1  # type: ignore[union-attr]


async def test_outside_its_policy_a_principal_gets_403_and_nothing_changes(
    tmp_path: Path,
) -> None:
    async with secured(tmp_path, encrypt=True, master_key_env=None) as s:
        clerk = bearer(hs256())
        assert (
            await s.commands.post(
                "/commands/PlaceOrder",
                json={"order_id": "order-1", "customer_id": "ada"},
                headers=clerk,
            )
        ).status_code == 200
        keyed = await s.commands.post(
            "/commands/AddLine",
            json={"order_id": "order-1", "sku": "fig", "quantity": 1, "unit_price_cents": 5},
            headers={**clerk, "Idempotency-Key": "k1"},
        )
        command_id = keyed.json()["command_id"]
        viewer_jwt = bearer(hs256(sub="vic", roles=["viewer"]))
        viewer_key = {"X-API-Key": s.api_keys["vic"]}
        nobody = bearer(hs256(sub="nobody", roles=[]))
        before = fingerprint(tmp_path)
        refused = [
            ("POST", "/commands/PlaceOrder", {"order_id": "order-2", "customer_id": "bo"}),
            ("POST", "/commands/CancelOrder", {"order_id": "order-1", "reason": "no"}),
            ("GET", f"/outcomes/{command_id}", None),
            ("POST", "/admin/forget/ada", None),
            ("GET", "/admin/verify", None),
            ("GET", "/admin/export", None),
        ]
        for who in (viewer_jwt, viewer_key, nobody):
            for method, path, body in refused:
                answer = await s.commands.request(method, path, json=body, headers=who)
                assert answer.status_code == 403, (method, path, answer.text)
                assert answer.json()["error"] == "PermissionDenied"
            for path in ("/queries/stock", "/status", "/admin/projections/order_summaries/rebuild"):
                method = "POST" if path.startswith("/admin") else "GET"
                answer = await s.queries.request(method, path, headers=who)
                assert answer.status_code == 403, (path, answer.text)
        # The clerk too, for what its role does not grant.
        assert (
            await s.commands.post("/commands/CancelOrder", json={}, headers=clerk)
        ).status_code == 403
        assert (await s.commands.post("/admin/forget/ada", headers=clerk)).status_code == 403
        assert fingerprint(tmp_path) == before
        # What the viewer is granted works.
        answer = await s.queries.get(
            "/queries/order", params={"order_id": "order-1", "min_position": 2}, headers=viewer_key
        )
        assert answer.status_code == 200 and answer.json()["rows"][0]["lines"] == 1


async def test_the_actor_is_the_authenticated_principal(tmp_path: Path) -> None:
    async with secured(tmp_path) as s:
        forged = {"Eventfold-Actor": "mallory"}
        sent = [
            ("order-1", {**bearer(hs256()), **forged}),
            ("order-2", {"X-API-Key": s.api_keys["ana"], **forged}),
            ("order-3", {**bearer(rs256(s.keys)), **forged, "Prefer": "respond-async, wait=5"}),
            ("order-4", {**bearer(hs256(sub="dee", roles=["delegate"])), **forged}),
        ]
        for order, headers in sent:
            answer = await s.commands.post(
                "/commands/PlaceOrder",
                json={"order_id": order, "customer_id": "ada"},
                headers=headers,
            )
            assert answer.status_code == 200, answer.text
        store = s.runtime.store
        assert store is not None
        actors = {}
        async for record in store.read_all():
            metadata = msgspec.json.decode(record.metadata)
            actors[record.stream_id] = (
                metadata.get("actor"),
                metadata.get("extra", {}).get("on_behalf_of"),
            )
        assert actors == {
            "order-1": ("ana", None),
            "order-2": ("ana", None),
            "order-3": ("ana", None),
            "order-4": ("dee", "mallory"),  # granted actor:on-behalf: kept as such
        }
        assert "mallory" not in str([a for a, _ in actors.values()])


async def test_the_openapi_documents_declare_the_security_schemes(tmp_path: Path) -> None:
    async with secured(tmp_path) as s:
        for client in (s.commands, s.queries):
            assert (await client.get("/schema/openapi.json")).status_code == 401
            document = (await client.get("/schema/openapi.json", headers=bearer(hs256()))).json()
            schemes = document["components"]["securitySchemes"]
            assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            assert schemes["apikey"] == {"type": "apiKey", "name": "X-API-Key", "in": "header"}
            assert {"bearer": []} in document["security"] and {"apikey": []} in document["security"]


async def test_admin_routes_forget_verify_export_rebuild(tmp_path: Path) -> None:
    async with secured(tmp_path, encrypt=True, master_key_env=None) as s:
        admin = bearer(hs256(sub="root", roles=["admin"]))
        await s.commands.post(
            "/commands/PlaceOrder",
            json={"order_id": "order-1", "customer_id": "ada"},
            headers=admin,
        )
        verified = await s.commands.get("/admin/verify", headers=admin)
        assert verified.status_code == 200 and verified.json()["clean"] is True
        assert verified.json()["events"] == 1
        forgot = await s.commands.post("/admin/forget/ada", headers=admin)
        assert forgot.status_code == 200, forgot.text
        exported = await s.commands.get("/admin/export", headers=admin)
        assert exported.status_code == 200
        lines = [msgspec.json.decode(line) for line in exported.content.splitlines()]
        assert [line["stream_id"] for line in lines] == ["order-1"]
        rebuilt = await s.queries.post(
            "/admin/projections/order_summaries/rebuild?purge=true", headers=admin
        )
        assert rebuilt.status_code == 200, rebuilt.text
        assert rebuilt.json()["purged"] is True
        async with connect(f"sqlite:///{tmp_path / 'events.db'}") as raw:
            assert await raw.head_position() == 1


async def test_forget_without_encryption_is_501_and_changes_nothing(tmp_path: Path) -> None:
    async with secured(tmp_path) as s:
        admin = bearer(hs256(sub="root", roles=["admin"]))
        answer = await s.commands.post("/admin/forget/ada", headers=admin)
        assert answer.status_code == 501, answer.text
        assert answer.json()["error"] == "ConfigurationError"


def test_security_needs_an_authenticator() -> None:
    from eventfold.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        Security([], Policy())
