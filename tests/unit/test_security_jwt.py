"""JWT bearer tokens: what is accepted, and every way a bad token is refused."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from eventfold.errors import AuthenticationFailed, ConfigurationError
from eventfold.security import JWTAuthenticator
from tests.security_helpers import (
    AUDIENCE,
    ISSUER,
    SECRET,
    Keys,
    claims,
    es256,
    hs256,
    hs256_with_public_key,
    rs256,
    unsigned,
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("jwks"))


def authenticator(keys: Keys | None = None, **options: object) -> JWTAuthenticator:
    return JWTAuthenticator(
        issuer=ISSUER,
        audience=AUDIENCE,
        secret=SECRET,
        jwks=str(keys.jwks_file) if keys is not None else None,
        **options,  # type: ignore[arg-type]
    )


async def test_a_good_token_gives_its_principal(keys: Keys) -> None:
    auth = authenticator(keys)
    for token in (
        hs256(tenant="acme", scope="orders:read orders:write"),
        rs256(keys, tenant="acme", scope="orders:read orders:write"),
        es256(keys, tenant="acme", scope="orders:read orders:write"),
    ):
        principal = await auth.authenticate(token)
        assert principal.id == "ana"
        assert principal.roles == {"clerk"}
        assert principal.scopes == {"orders:read", "orders:write"}
        assert principal.tenant == "acme"
        assert principal.via == "jwt"


def _tampered(token: str) -> str:
    head, body, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["roles"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


async def test_every_bad_token_is_refused(keys: Keys) -> None:
    auth = authenticator(keys)
    rsa_only = authenticator(keys)
    rsa_only._secret = None  # a deployment with only the JWKS
    bad = {
        "expired": hs256(exp=1_000_000),
        "not yet valid": hs256(nbf=4_000_000_000),
        "wrong audience": hs256(aud="someone-else"),
        "wrong issuer": rs256(keys, iss="https://evil.test"),
        "alg none": unsigned(),
        "tampered signature": _tampered(rs256(keys)),
        "tampered HS256": _tampered(hs256()),
        "no exp": hs256(exp=None),
        "no sub": hs256(sub=None),
        "no aud": hs256(aud=None),
        "no iss": hs256(iss=None),
        "wrong secret": jwt.encode(claims(), b"x" * 40, algorithm="HS256"),
        "unknown kid": jwt.encode(claims(), keys.rsa, algorithm="RS256", headers={"kid": "nope"}),
        "bad tenant": hs256(tenant="../b"),
        "not a token": "not.a.token",
        "garbage": "%%%",
    }
    for case, token in bad.items():
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate(token)
            pytest.fail(f"accepted: {case}")
    for case, token in {
        "HS256 signed with the RSA public key": hs256_with_public_key(keys),
        "alg none": unsigned(),
        "RS256 header on the EC key": jwt.encode(
            claims(), keys.rsa, algorithm="RS256", headers={"kid": "ec-1"}
        ),
    }.items():
        with pytest.raises(AuthenticationFailed):
            await rsa_only.authenticate(token)
            pytest.fail(f"accepted: {case}")


async def test_clock_skew_is_allowed_within_the_leeway_only() -> None:
    import time

    auth = authenticator(leeway=60)
    await auth.authenticate(hs256(exp=int(time.time()) - 30))
    with pytest.raises(AuthenticationFailed, match="expired"):
        await auth.authenticate(hs256(exp=int(time.time()) - 120))
    with pytest.raises(ConfigurationError):
        authenticator(leeway=3600)


def test_configuration_is_checked() -> None:
    with pytest.raises(ConfigurationError):
        JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ConfigurationError):
        JWTAuthenticator(issuer="", audience=AUDIENCE, secret=SECRET)
    with pytest.raises(ConfigurationError, match="32 bytes"):
        JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE, secret=b"short")


def test_a_jwks_with_a_symmetric_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    secret = base64.urlsafe_b64encode(SECRET).rstrip(b"=").decode()
    path.write_text(json.dumps({"keys": [{"kty": "oct", "k": secret, "kid": "s"}]}))
    with pytest.raises(ConfigurationError, match="only RS256 and ES256"):
        JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE, jwks=str(path))


@pytest.fixture
def jwks_url(keys: Keys) -> Iterator[str]:
    body = json.dumps(keys.jwks).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        thread.join(timeout=5)


async def test_keys_from_a_jwks_url(keys: Keys, jwks_url: str) -> None:
    auth = JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE, jwks=jwks_url)
    assert (await auth.authenticate(rs256(keys))).id == "ana"
    assert (await auth.authenticate(es256(keys))).id == "ana"
    for token in (hs256(), unsigned(), hs256_with_public_key(keys), _tampered(es256(keys))):
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate(token)
