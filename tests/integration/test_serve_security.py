"""``eventfold serve`` with security: the documented session with a token
and an API key, refusal to expose itself without authentication, a loud
``--insecure``, and no secret in its output at debug level."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from eventfold.errors import ConfigurationError
from eventfold.services import ServeConfig
from eventfold.services.server import check_exposure
from tests.conftest import NatsLogin, PostgresLogin
from tests.integration.test_http_serve import ROOT, eventfold_command, serving
from tests.security_helpers import AUDIENCE, ISSUER, POLICY, hs256

JWT_SECRET = "a-jwt-secret-that-is-long-enough-0123456789"


def secure_session() -> str:
    text = (ROOT / "docs" / "security.md").read_text()
    after = text.split("<!-- secure-session", 1)[1]
    return after.split("```sh\n", 1)[1].split("```", 1)[0]


def policy_of_the_docs() -> str:
    text = (ROOT / "docs" / "security.md").read_text()
    session = text.split("## A session", 1)[1]
    return session.split("<<'EOF'\n", 1)[1].split("EOF\n", 1)[0]


def test_the_secure_session_in_the_docs_runs_against_eventfold_serve(tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("curl and bash are needed to run the documented session")
    (tmp_path / "policy.toml").write_text(policy_of_the_docs())
    env = {"EVENTFOLD_JWT_SECRET": JWT_SECRET}
    args = (
        "--jwt-issuer", "https://login.example.com", "--jwt-audience", "shop",
        "--api-keys", "sqlite:///eventfold-control.db", "--policy", "policy.toml",
    )  # fmt: skip
    with serving(*args, cwd=tmp_path, env=env) as served:
        script = secure_session()
        script = script.replace("localhost:8000", served.command.removeprefix("http://"))
        script = script.replace("localhost:8001", served.query.removeprefix("http://"))
        bin_dir = str(Path(sys.executable).parent)
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={
                **os.environ,
                **env,
                "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
                "PYTHONPATH": str(ROOT),
            },
            check=False,
        )
        assert run.returncode == 0, run.stderr
        out = run.stdout
        assert '"command":"ReceiveStock","status":"succeeded"' in out
        assert '"actor":"ana"' in out and "someone-else" not in out
        assert "HTTP/1.1 401 Unauthorized" in out
        assert re.search(r'www-authenticate: Bearer realm="eventfold", ApiKey', out, re.I)
        assert '"error":"PermissionDenied"' in out
        assert '"clean":true,"streams":1,"events":1' in out


def run_serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*eventfold_command(), "serve", "--command-port", "0", "--query-port", "0", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_refuses_to_expose_itself_without_authentication(tmp_path: Path) -> None:
    (tmp_path / "tenants.toml").write_text(
        'control = "sqlite:///control.db"\n[servers]\nmain = "sqlite:///tenants"\n'
    )
    for args, said in (
        (("--host", "0.0.0.0"), "refusing to serve on 0.0.0.0 without authentication"),
        (("--host", "192.0.2.10"), "refusing to serve on 192.0.2.10"),
        (("--tenants", "tenants.toml"), "authentication needs a --policy"),
        (("--store", "postgresql://app:hunter2@db/shop"), "--store carries a password"),
        (("--nats", "nats://app:hunter2@127.0.0.1:4222"), "--nats carries a password"),
        (
            ("--jwt-issuer", "i", "--jwt-audience", "a", "--jwt-secret-file", "nope"),
            "cannot read the secret file",
        ),
    ):
        done = run_serve(*args, cwd=tmp_path)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert said in " ".join(done.stderr.split()), (args, done.stderr)
        assert "Traceback" not in done.stderr and "hunter2" not in done.stderr + done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tenants.toml"]  # nothing created
    (tmp_path / "secret").write_text(JWT_SECRET)
    done = run_serve(
        "--jwt-issuer", "i", "--jwt-audience", "a", "--jwt-secret-file", "secret", cwd=tmp_path
    )
    assert done.returncode == 1 and "needs a --policy" in " ".join(done.stderr.split())


def test_insecure_is_logged_loudly(caplog: pytest.LogCaptureFixture) -> None:
    config = ServeConfig()
    with caplog.at_level(logging.WARNING, logger="eventfold.services"):
        check_exposure(config, None, "0.0.0.0", insecure=True)
    assert any(
        r.levelno == logging.WARNING and "INSECURE" in r.getMessage() for r in caplog.records
    )
    with pytest.raises(ConfigurationError):
        check_exposure(config, None, "0.0.0.0", insecure=False)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_exposure(config, None, host, insecure=False)


def test_secrets_never_reach_the_logs(
    tmp_path: Path, postgres_login: PostgresLogin, nats_login: NatsLogin
) -> None:
    master_key = "ab" * 32
    (tmp_path / "master.key").write_text(master_key)
    (tmp_path / "nats.password").write_text(nats_login.password)
    (tmp_path / "policy.toml").write_text(POLICY)
    control = f"sqlite:///{tmp_path / 'control.db'}"
    made = subprocess.run(
        [*eventfold_command(), "keys", "create", "--principal", "bot", "--role", "admin",
         "--control", control],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    api_key = made.stdout.strip()
    schema = f"s{os.getpid()}_{time.monotonic_ns()}"
    env = {
        "EVENTFOLD_JWT_SECRET": JWT_SECRET,
        "PGPASSFILE": postgres_login.passfile,
        "EVENTFOLD_STORE": f"{postgres_login.url}?schema={schema}",
        "PYTHONPATH": str(ROOT),  # the app under test lives in tests/
    }
    args = (
        "--app", "tests.customers_app:service",
        "--read-model", f"{postgres_login.url}?schema={schema}_reads",
        "--nats", nats_login.url, "--nats-user", nats_login.user,
        "--nats-password-file", str(tmp_path / "nats.password"),
        "--prefix", schema,
        "--encrypt", "--master-key-file", str(tmp_path / "master.key"),
        "--require-metadata", "actor",
        "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE,
        "--api-keys", control, "--policy", str(tmp_path / "policy.toml"),
        "--log-level", "debug",
    )  # fmt: skip
    token = hs256()  # signed with the helpers' secret: refused here (another secret)
    import jwt

    good = jwt.encode(
        {"sub": "ana", "roles": ["admin"], "iss": ISSUER, "aud": AUDIENCE, "exp": 4_000_000_000},
        JWT_SECRET,
        algorithm="HS256",
    )
    with serving(*args, cwd=tmp_path, env=env) as served:
        customer = {"customer_id": "customer-ada", "name": "Ada L", "email": "ada@x.test"}
        with httpx.Client(timeout=30) as client:
            sent = client.post(
                f"{served.command}/commands/RegisterCustomer",
                json=customer,
                headers={"Authorization": f"Bearer {good}"},
            )
            assert sent.status_code == 200, sent.text
            assert (
                client.post(
                    f"{served.command}/commands/RegisterCustomer",
                    json=customer,
                    headers={"X-API-Key": api_key},
                ).status_code
                == 422  # registered already: the key worked
            )
            for headers in (
                {"Authorization": f"Bearer {token}"},
                {"X-API-Key": api_key[:-2] + "zz"},
                {"Authorization": f"Bearer {good[:-3]}abc"},
            ):
                answer = client.get(f"{served.query}/status", headers=headers)
                assert answer.status_code == 401
            history = client.get(
                f"{served.query}/streams/customer-ada/events",
                params={"min_position": sent.json()["position"]},
                headers={"X-API-Key": api_key},
            )
            assert history.json()["events"][0]["data"]["name"] == "Ada L"
    output = "".join(served.lines)
    assert "DEBUG" in output  # it did log, at debug level
    for secret in (
        JWT_SECRET,
        master_key,
        nats_login.password,
        postgres_login.password,
        api_key,
        api_key.split("_", 2)[-1],  # efk_<id>_<secret>: the secret may hold "_" too
        good,
        good.rsplit(".", 1)[-1],
    ):
        assert secret not in output
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False)
    for secret in (JWT_SECRET, master_key, nats_login.password, postgres_login.password):
        assert secret not in ps.stdout
