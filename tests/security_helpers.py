"""Keys, tokens and a policy for the security tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://issuer.test"
AUDIENCE = "eventfold-test"
SECRET = b"a-shared-secret-of-at-least-32-bytes!!"

POLICY = """
[roles]
clerk = ["command:PlaceOrder", "command:AddLine", "command:ReceiveStock", "query:*",
         "stream:read", "status:read"]
viewer = ["query:order", "stream:read"]
admin = ["*"]
delegate = ["command:*", "actor:on-behalf"]
"""


class Keys:
    """An RSA and an EC key pair and a JWKS file of their public halves."""

    def __init__(self, directory: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        rsa_jwk.update(kid="rsa-1", alg="RS256", use="sig")
        ec_jwk.update(kid="ec-1", alg="ES256", use="sig")
        self.jwks = {"keys": [rsa_jwk, ec_jwk]}
        self.jwks_file = directory / "jwks.json"
        self.jwks_file.write_text(json.dumps(self.jwks))

    def rsa_public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {
        "sub": "ana",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "roles": ["clerk"],
    }
    out.update(overrides)
    return {k: v for k, v in out.items() if v is not None}


def hs256(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), SECRET, algorithm="HS256")


def rs256(keys: Keys, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), keys.rsa, algorithm="RS256", headers={"kid": "rsa-1"})


def es256(keys: Keys, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), keys.ec, algorithm="ES256", headers={"kid": "ec-1"})


def unsigned(**overrides: Any) -> str:
    """A token with ``alg: none`` (no signature)."""
    return jwt.encode(claims(**overrides), None, algorithm="none")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _part(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def hs256_with_public_key(keys: Keys) -> str:
    """The key-confusion attack: HS256, signed with the RSA public key (PEM)
    as if it were the shared secret, naming the RSA key's id."""
    signing = (
        f"{_part({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'})}.{_part(claims(roles=['admin']))}"
    )
    mac = hmac.new(keys.rsa_public_pem(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
