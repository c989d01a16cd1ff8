"""What authentication costs per request: the same requests against the
command API with security off, with JWT bearer tokens (HS256, RS256,
ES256) and with API keys, in-process over ASGI (no network), on an
in-memory store.

    python -m bench.auth                 # prints the table
    python -m bench.auth --docs          # and writes it into docs/benchmarks.md

Two requests: ``GET /commands`` (authentication and nothing else much) and
``POST /commands/ReceiveStock`` (a command: decide and append). Each cell
is the median of ``--repeat`` runs of ``--requests`` sequential requests."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from eventfold.examples.shop.services import service
from eventfold.security import (
    APIKeyAuthenticator,
    JWTAuthenticator,
    Policy,
    Security,
    create_key,
    open_api_keys,
)
from eventfold.services import Runtime, ServeConfig
from eventfold.services.server import apps

ROOT = Path(__file__).resolve().parent.parent
MARK_START = "<!-- bench:auth:start -->"
MARK_END = "<!-- bench:auth:end -->"
ISSUER, AUDIENCE = "https://issuer.bench", "bench"
SECRET = b"bench-secret-bench-secret-bench-secret!"


def _claims() -> dict[str, Any]:
    exp = int(time.time()) + 3600
    return {"sub": "bench", "iss": ISSUER, "aud": AUDIENCE, "exp": exp, "roles": ["all"]}


Side = tuple[str, Security | None, dict[str, str]]


async def _sides(directory: Path) -> tuple[list[Side], Callable[[], Any]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = []
    for kid, alg, key, algo in (
        ("r", "RS256", rsa_key, jwt.algorithms.RSAAlgorithm),
        ("e", "ES256", ec_key, jwt.algorithms.ECAlgorithm),
    ):
        jwk = json.loads(algo.to_jwk(key.public_key()))
        jwk.update(kid=kid, alg=alg)
        keys.append(jwk)
    jwks = directory / "jwks.json"
    jwks.write_text(json.dumps({"keys": keys}))
    policy = Policy(roles={"all": ["*"]})
    bearer = JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE, secret=SECRET, jwks=str(jwks))
    store = open_api_keys(f"sqlite:///{directory / 'control.db'}")
    _, api_key = await create_key(store, "bench", roles=["all"])
    both = Security([bearer, APIKeyAuthenticator(store)], policy)
    cached = Security([APIKeyAuthenticator(store, cache_seconds=5)], policy)

    def token(key: Any, alg: str, kid: str | None) -> dict[str, str]:
        headers = {"kid": kid} if kid else None
        return {"Authorization": f"Bearer {jwt.encode(_claims(), key, alg, headers=headers)}"}

    sides: list[Side] = [
        ("off", None, {}),
        ("JWT HS256", both, token(SECRET, "HS256", None)),
        ("JWT RS256", both, token(rsa_key, "RS256", "r")),
        ("JWT ES256", both, token(ec_key, "ES256", "e")),
        ("API key (SQLite)", both, {"X-API-Key": api_key}),
        ("API key, cached 5 s", cached, {"X-API-Key": api_key}),
    ]
    return sides, store.close


async def _run(app: Any, headers: dict[str, str], requests: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"GET /commands": [], "POST /commands/ReceiveStock": []}
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for n in range(requests):
            start = time.perf_counter()
            answer = await client.get("/commands", headers=headers)
            out["GET /commands"].append(time.perf_counter() - start)
            assert answer.status_code == 200, answer.text
            start = time.perf_counter()
            answer = await client.post(
                "/commands/ReceiveStock",
                json={"sku": f"s{n % 50}", "quantity": 1},
                headers=headers,
            )
            out["POST /commands/ReceiveStock"].append(time.perf_counter() - start)
            assert answer.status_code == 200, answer.text
    return out


async def measure(requests: int, repeat: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        sides, close = await _sides(directory)
        config = ServeConfig(
            store="memory://",
            outcomes="memory://",
            read_model=f"sqlite:///{directory / 'reads.db'}",
            workers=0,
        )
        rows: dict[tuple[str, str], list[float]] = {}
        async with Runtime(service, config) as runtime:
            built = {name: apps(runtime, security=sec)["command"] for name, sec, _ in sides}
            for _ in range(repeat):  # sides interleaved run by run
                for name, _, headers in sides:
                    for route, times in (await _run(built[name], headers, requests)).items():
                        rows.setdefault((route, name), []).append(statistics.median(times))
                        rows.setdefault((route, name + " p99"), []).append(
                            sorted(times)[int(len(times) * 0.99) - 1]
                        )
        await close()
    table = []
    for route in ("GET /commands", "POST /commands/ReceiveStock"):
        base = statistics.median(rows[(route, "off")])
        for name, *_ in sides:
            p50 = statistics.median(rows[(route, name)])
            p99 = statistics.median(rows[(route, name + " p99")])
            table.append(
                {
                    "route": route,
                    "auth": name,
                    "p50_us": p50 * 1e6,
                    "p99_us": p99 * 1e6,
                    "added_us": (p50 - base) * 1e6,
                }
            )
    return table


def markdown(table: list[dict[str, Any]], requests: int, repeat: int) -> str:
    lines = [
        f"Per request, in-process over ASGI, {requests} sequential requests x {repeat} runs "
        "(median of the runs' medians; p99 likewise), `python -m bench.auth`:",
        "",
        "| request | authentication | p50 | p99 | added to p50 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in table:
        added = "-" if row["auth"] == "off" else f"{row['added_us']:+.0f} µs"
        lines.append(
            f"| `{row['route']}` | {row['auth']} | {row['p50_us']:.0f} µs | "
            f"{row['p99_us']:.0f} µs | {added} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--docs", action="store_true", help="write the table into the docs")
    args = parser.parse_args()
    table = asyncio.run(measure(args.requests, args.repeat))
    text = markdown(table, args.requests, args.repeat)
    print(text)
    if args.docs:
        path = ROOT / "docs" / "benchmarks.md"
        doc = path.read_text()
        head, rest = doc.split(MARK_START, 1)
        _, tail = rest.split(MARK_END, 1)
        path.write_text(f"{head}{MARK_START}\n{text}{MARK_END}{tail}")


if __name__ == "__main__":
    main()
