"""Tenants kept apart, on real PostgreSQL (a role logging in with a
scram-sha-256 password, and a second server) and real NATS JetStream with
authentication on.

Tenant A's credentials walk every route against tenant B's resources
(streams, read models, outcomes by guessed id, positions and freshness, bus
messages, keys): nothing of B is read or written. The same holds through the
CLI, through the Python API with a tenant-bound store and through
subscriptions. Erasure stays inside its tenant, and a deleted tenant's data
cannot be read."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest

from eventfold.compliance.chain import verify
from eventfold.errors import BusError
from eventfold.messaging import Topology, open_bus
from eventfold.security import JWTAuthenticator, Policy, Security
from eventfold.serialization.crypto import REDACTED
from eventfold.services import ServeConfig
from eventfold.services.server import apps
from eventfold.services.sites import TenantRuntimes, tenant_prefix
from eventfold.subscriptions import ProjectionRunner, SQLiteReadModel
from eventfold.tenancy import Tenancy, Tenants
from tests.conftest import NatsLogin, PostgresLogin, with_params
from tests.customers_app import codec, directory, service
from tests.security_helpers import AUDIENCE, ISSUER, POLICY, SECRET, bearer, hs256

ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "11" * 32


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, postgres_login: PostgresLogin, nats_login: NatsLogin
) -> dict[str, str]:
    """Secrets for this process and the CLI's, in the environment (never argv)."""
    values = {
        "PGPASSFILE": postgres_login.passfile,
        "EVENTFOLD_MASTER_KEY": MASTER_KEY,
        "EVENTFOLD_NATS_PASSWORD": nats_login.password,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def tenancy(postgres_login: PostgresLogin, postgres_url: str, env: dict[str, str]) -> Tenancy:
    return Tenancy(
        control=with_params(postgres_login.url, schema=f"control_{uuid.uuid4().hex[:8]}"),
        servers={"main": postgres_login.url, "second": postgres_url},
        default="main",
    )


class World:
    def __init__(
        self,
        commands: httpx.AsyncClient,
        queries: httpx.AsyncClient,
        sites: TenantRuntimes,
        built: dict[str, Any],
        a: str,
        b: str,
    ) -> None:
        self.built = built
        self.commands = commands
        self.queries = queries
        self.sites = sites
        self.a = a
        self.b = b

    def token(self, tenant: str | None, roles: list[str], sub: str = "ana") -> dict[str, str]:
        return bearer(hs256(sub=sub, tenant=tenant, roles=roles))


@contextlib.asynccontextmanager
async def world(tenancy: Tenancy, nats_login: NatsLogin, tmp_path: Path) -> AsyncIterator[World]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    security = Security(
        [JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE, secret=SECRET)],
        Policy.from_file(policy),
    )
    config = ServeConfig(
        prefix=f"t{uuid.uuid4().hex[:6]}",
        nats=nats_login.url,
        nats_user=nats_login.user,
        encrypt=True,
        audit=("actor", "correlation_id"),
        tenancy=tenancy,
        poll_interval=0.05,
        max_wait=5.0,
    )
    sites = TenantRuntimes(service, config, Tenants(tenancy))
    built = apps(sites, security=security)
    try:
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(built["command"]), base_url="http://c"
            ) as commands,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(built["query"]), base_url="http://q"
            ) as queries,
        ):
            suffix = uuid.uuid4().hex[:6]
            yield World(commands, queries, sites, built, f"acme_{suffix}", f"bolt_{suffix}")
    finally:
        await sites.close()


async def register(w: World, tenant: str, customer: str, name: str, **headers: str) -> Any:
    answer = await w.commands.post(
        "/commands/RegisterCustomer",
        json={"customer_id": customer, "name": name, "email": f"{name.split()[0]}@x.test"},
        headers={**w.token(tenant, ["admin"]), **headers},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def b_fingerprint(w: World) -> tuple[Any, ...]:
    """Everything of tenant B: its log and chains, outcomes, read model rows."""
    runtime = await w.sites.for_tenant(w.b)
    assert runtime.store is not None and runtime.outcomes is not None
    log = [(r.stream_id, r.version, r.data, r.metadata) async for r in runtime.store.read_all()]
    report = await verify(runtime.store)  # type: ignore[arg-type]
    answer = await w.queries.get(
        "/queries/all_customers",
        params={"min_position": await runtime.store.head_position()},
        headers=w.token(w.b, ["admin"]),
    )
    return log, report.heads, answer.json()["rows"]


async def test_tenant_a_walks_every_route_and_sees_nothing_of_b(
    tenancy: Tenancy, nats_login: NatsLogin, tmp_path: Path
) -> None:
    async with world(tenancy, nats_login, tmp_path) as w:
        platform = w.token(None, ["admin"], sub="operator")
        for tenant, server in ((w.a, "main"), (w.b, "second")):
            created = await w.commands.post(
                "/admin/tenants", json={"tenant": tenant, "server": server}, headers=platform
            )
            assert created.status_code == 201, created.text
        assert (
            await w.commands.post("/admin/tenants", json={"tenant": w.a}, headers=platform)
        ).status_code == 409
        # A tenant's own admin cannot manage tenants, whatever its roles.
        a_admin = w.token(w.a, ["admin"])
        for method, path in (("GET", "/admin/tenants"), ("DELETE", f"/admin/tenants/{w.b}")):
            assert (await w.commands.request(method, path, headers=a_admin)).status_code == 403
        # Credentials without a tenant reach no tenant's data.
        assert (await w.queries.get("/queries/all_customers", headers=platform)).status_code == 403

        a_ada = await register(w, w.a, "customer-ada", "Ada Alpha", **{"Idempotency-Key": "k-1"})
        b_ada = await register(w, w.b, "customer-ada", "Ada Bravo")
        b_bea = await register(w, w.b, "customer-bea", "Bea Bravo", **{"Idempotency-Key": "k-1"})
        assert a_ada["position"] and b_ada["position"] and b_bea["position"]
        before = await b_fingerprint(w)
        assert len(before[0]) == 2
        b_runtime = await w.sites.for_tenant(w.b)
        assert b_runtime.store is not None
        b_secrets = ["Ada Bravo", "Bea Bravo"]
        b_secrets += [str(r.event_id) async for r in b_runtime.store.read_all()]

        # Every route, with A's credentials, aimed at B's resources.
        walk: list[tuple[httpx.AsyncClient, str, str, Any]] = [
            (w.queries, "GET", "/streams/customer-bea/events", None),
            (w.queries, "GET", "/streams/customer-ada/events", None),
            (w.queries, "GET", "/streams/customer-bea/state", None),
            (w.queries, "GET", "/queries/customer?customer_id=customer-bea", None),
            (w.queries, "GET", "/queries/all_customers", None),
            (w.queries, "GET", "/status", None),
            (w.queries, "GET", "/queries", None),
            (w.queries, "GET", "/queries/no_such_query", None),
            (w.queries, "POST", "/admin/projections/customers/rebuild?purge=true", None),
            (w.commands, "GET", f"/outcomes/{b_bea['command_id']}", None),
            (w.commands, "GET", f"/outcomes/{b_ada['command_id']}", None),
            (w.commands, "GET", "/commands", None),
            (w.commands, "GET", "/admin/export", None),
            (w.commands, "GET", "/admin/verify", None),
            (w.commands, "POST", "/admin/forget/customer-bea", None),
            (w.commands, "DELETE", f"/admin/tenants/{w.b}", None),
            (w.commands, "GET", "/schema/openapi.json", None),
        ]
        walked = {(method, path.split("?")[0]) for _, method, path, _ in walk}
        walked |= {("POST", "/commands/RegisterCustomer"), ("GET", "/health")}  # below; open
        for app in w.built.values():
            for route in app.routes:
                for method in set(getattr(route, "methods", ())) - {"HEAD", "OPTIONS"}:
                    if route.path.startswith("/schema") and route.path != "/schema/openapi.json":
                        continue  # the same document in other renderings
                    concrete = {
                        "/streams/{stream_id:str}/events": "/streams/customer-bea/events",
                        "/streams/{stream_id:str}/state": "/streams/customer-bea/state",
                        "/outcomes/{command_id:str}": f"/outcomes/{b_bea['command_id']}",
                        "/admin/forget/{subject:str}": "/admin/forget/customer-bea",
                        "/admin/tenants/{tenant:str}": f"/admin/tenants/{w.b}",
                        "/admin/projections/{name:str}/rebuild": (
                            "/admin/projections/customers/rebuild"
                        ),
                        "/commands/{name:str}": "/commands/RegisterCustomer",
                        "/queries/{name:str}": "/queries/no_such_query",
                    }.get(route.path, route.path)
                    assert (method, concrete) in walked or (method, route.path) in {
                        ("POST", "/admin/tenants"),  # the platform's, tried above
                        ("GET", "/admin/tenants"),
                    }, (method, route.path)
        for client, method, path, body in walk:
            answer = await client.request(method, path, json=body, headers=a_admin)
            assert answer.status_code in (200, 403, 404), (path, answer.status_code, answer.text)
            for secret in b_secrets:
                assert secret not in answer.text, (path, secret)
        # Outcomes by guessed id: 404, not B's; the same key in A is A's own.
        assert (
            await w.commands.get(f"/outcomes/{b_bea['command_id']}", headers=a_admin)
        ).status_code == 404
        again = await register(w, w.a, "customer-ada", "Ada Alpha", **{"Idempotency-Key": "k-1"})
        assert again["command_id"] == a_ada["command_id"]
        # Positions and freshness are A's own log's.
        a_runtime = await w.sites.for_tenant(w.a)
        assert a_runtime.store is not None
        a_head = await a_runtime.store.head_position()
        status = (await w.queries.get("/status", headers=a_admin)).json()
        assert status["head"] <= a_head
        history = await w.queries.get(
            "/streams/customer-ada/events",
            params={"min_position": a_head},
            headers=a_admin,
        )
        events = history.json()["events"]
        assert [e["data"]["name"] for e in events] == ["Ada Alpha"]
        assert history.json()["freshness"]["head"] == a_head
        # A writes a stream named like B's: it lands in A only.
        landed = await register(w, w.a, "customer-bea", "Bea Alpha")
        assert await b_fingerprint(w) == before
        # Once A's query side has its last event, the bus has carried it.
        reached = await w.queries.get(
            "/streams/customer-bea/events",
            params={"min_position": landed["position"]},
            headers=a_admin,
        )
        assert [e["data"]["name"] for e in reached.json()["events"]] == ["Bea Alpha"]

        # Bus messages: each tenant's stream holds its own events only.
        bus = open_bus(nats_login.url, user=nats_login.user, password=nats_login.password)
        try:
            for tenant in (w.a, w.b):
                topology = Topology(tenant_prefix(w.sites.config.prefix, tenant))
                info = await bus.stream_info(topology.events_stream)
                assert info.messages == 2  # customer-ada, customer-bea: its own two
                found = [
                    await bus.get(topology.events_stream, seq)
                    for seq in range(info.first_seq, info.last_seq + 1)
                ]
                text = b"".join(m.data for m in found if m is not None)
                # Names with a space: never found by chance in base64 or ids. Personal
                # fields travel encrypted, so no tenant's names are on the bus at all.
                for name in (b"Ada Alpha", b"Bea Alpha", b"Ada Bravo", b"Bea Bravo"):
                    assert name not in text
        finally:
            await bus.close()

        # Erasure stays inside its tenant.
        forgot = await w.commands.post("/admin/forget/customer-ada", headers=a_admin)
        assert forgot.json()["keys_destroyed"] == 1
        a_read = await w.queries.get(
            "/streams/customer-ada/events", params={"min_position": a_head}, headers=a_admin
        )
        assert a_read.json()["events"][0]["data"]["name"] == REDACTED
        b_read = await w.queries.get(
            "/streams/customer-ada/events", headers=w.token(w.b, ["admin"])
        )
        assert b_read.json()["events"][0]["data"]["name"] == "Ada Bravo"
        assert await b_fingerprint(w) == before

        # A deleted tenant's data cannot be read.
        b_place = await w.sites.catalog.place(w.b)
        deleted = await w.commands.delete(f"/admin/tenants/{w.b}", headers=platform)
        assert deleted.status_code == 204, deleted.text
        gone = await w.queries.get("/streams/customer-ada/events", headers=w.token(w.b, ["admin"]))
        assert gone.status_code == 404 and gone.json()["error"] == "UnknownTenant"
        listed = (await w.commands.get("/admin/tenants", headers=platform)).json()
        assert [t["tenant"] for t in listed] == [w.a]
        schema = b_place.store.rsplit("schema=", 1)[1]
        with psycopg.connect(tenancy.servers["second"]) as conn:
            left = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (schema + "%",)
            ).fetchall()
        assert left == []
        bus = open_bus(nats_login.url, user=nats_login.user, password=nats_login.password)
        try:
            with pytest.raises(BusError):
                await bus.stream_info(
                    Topology(tenant_prefix(w.sites.config.prefix, w.b)).events_stream
                )
        finally:
            await bus.close()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from eventfold.cli import main; main()", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_cli_the_python_api_and_subscriptions_stay_in_their_tenant(
    tenancy: Tenancy, nats_login: NatsLogin, tmp_path: Path, env: dict[str, str]
) -> None:
    tenants_file = tmp_path / "tenants.toml"
    servers = "\n".join(f'{k} = "{v}"' for k, v in tenancy.servers.items())
    tenants_file.write_text(
        f'control = "{tenancy.control}"\ndefault = "main"\n[servers]\n{servers}\n'
    )
    async with world(tenancy, nats_login, tmp_path) as w:
        made = cli("tenants", "create", w.a, "--tenants", str(tenants_file), env=env)
        assert made.returncode == 0, made.stderr + made.stdout
        made = cli(
            "tenants", "create", w.b, "--server", "second", "--tenants", str(tenants_file), env=env
        )
        assert made.returncode == 0, made.stderr + made.stdout
        await register(w, w.a, "customer-ada", "Ada Alpha")
        await register(w, w.b, "customer-ada", "Ada Bravo")
        await register(w, w.b, "customer-bea", "Bea Bravo")

        # The CLI.
        common = ["--tenants", str(tenants_file)]
        verified = cli("verify", "--tenant", w.a, *common, env=env)
        assert verified.returncode == 0 and "1 streams, 1 events" in verified.stdout, verified
        out = tmp_path / "a.jsonl"
        exported = cli(
            "export",
            str(out),
            "--tenant",
            w.a,
            "--registry",
            "tests.customers_app:registry",
            "--no-progress",
            *common,
            env=env,
        )
        assert exported.returncode == 0, exported.stderr
        assert "Ada Alpha" in out.read_text() and "Bravo" not in out.read_text()
        forgot = cli("forget", "customer-bea", "--tenant", w.a, *common, env=env)
        assert forgot.returncode == 0 and "0 key(s)" in forgot.stdout, forgot
        both = cli("verify", "--tenant", w.a, "--store", "sqlite:///x.db", *common, env=env)
        assert both.returncode != 0
        listed = cli("tenants", "list", *common, env=env)
        assert w.a in listed.stdout and w.b in listed.stdout

        # The Python API: a store bound to tenant A.
        async with Tenants(tenancy) as catalog:
            store = await catalog.connect(w.a)
            try:
                assert [r.stream_id async for r in store.read_all()] == ["customer-ada"]
                assert [r async for r in store.read_stream("customer-bea")] == []
                # Subscriptions on it see A's events only.
                async with (
                    SQLiteReadModel(tmp_path / "a-reads.db") as reads,
                    ProjectionRunner(store, reads, [directory], codec) as runner,
                ):
                    head = await store.head_position()
                    rows = await runner.query(
                        "customers", "SELECT customer_id FROM {customers}", min_position=head
                    )
                    assert rows.rows == [("customer-ada",)]
            finally:
                await store.close()

        # Forget in B leaves A's subject of the same id readable.
        forgot = cli("forget", "customer-ada", "--tenant", w.b, *common, env=env)
        assert forgot.returncode == 0 and "1 key(s)" in forgot.stdout, forgot
        a_runtime = await w.sites.for_tenant(w.a)
        assert a_runtime.store is not None
        names = [
            msgspec.json.decode(r.data)["name"]
            async for r in a_runtime.store.read_stream("customer-ada")
        ]
        assert names == ["Ada Alpha"]

        # Deleting through the CLI destroys the tenant; it is not served again.
        assert cli("tenants", "delete", w.b, *common, env=env).returncode != 0  # no --yes
        await w.sites.stop(w.b)  # the CLI wants the tenant's services stopped first
        b_stream = Topology(tenant_prefix(w.sites.config.prefix, w.b)).events_stream
        bus = open_bus(nats_login.url, user=nats_login.user, password=nats_login.password)
        try:
            assert (await bus.stream_info(b_stream)).last_seq > 0  # B's events are on the bus
            bus_options = ["--nats", nats_login.url, "--nats-user", nats_login.user]
            bus_options += ["--prefix", w.sites.config.prefix]
            deleted = cli("tenants", "delete", w.b, "--yes", *bus_options, *common, env=env)
            assert deleted.returncode == 0, deleted.stderr
            with pytest.raises(BusError):  # and gone with the tenant
                await bus.stream_info(b_stream)
        finally:
            await bus.close()
        again = cli("verify", "--tenant", w.b, *common, env=env)
        assert again.returncode == 1 and "UnknownTenant" in again.stderr
