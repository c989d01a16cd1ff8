"""JWT bearer tokens, checked by PyJWT.

Keys are pinned to one algorithm each: the HS256 shared secret to HS256,
every key of a JWKS (a file, or a URL fetched and cached) to the algorithm
its ``alg`` names or its type implies (RSA: RS256, EC P-256: ES256). A token
whose header names another algorithm than its key's is refused before any
signature is checked, so ``alg=none`` and HS256-signed-with-the-public-key
confusion fail. ``exp``, ``sub``, ``iss`` and ``aud`` are required; ``exp``
and ``nbf`` are checked with a bounded leeway."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt

from eventfold.errors import AuthenticationFailed, ConfigurationError
from eventfold.security.authn import bearer
from eventfold.security.principal import TENANT_PATTERN, Principal

MAX_LEEWAY = 300.0
"""Clock skew tolerated at most, in seconds."""
ASYMMETRIC = frozenset({"RS256", "ES256"})
MIN_SECRET_BYTES = 32


def _fail(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"invalid token: {reason}")


def _strings(value: object, claim: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise _fail(f"claim {claim!r} must be a list of strings")


class JWTAuthenticator:
    """``Authorization: Bearer <jwt>``. Give ``secret`` (HS256), ``jwks`` (a
    JWKS file path or an ``https://`` URL; RS256/ES256), or both.

    The principal: ``sub`` is its id, ``roles_claim`` (a list) its roles,
    ``scope`` (space separated) or ``scp`` (a list) its scopes, and
    ``tenant_claim`` its tenant."""

    scheme = "Bearer"

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        secret: bytes | None = None,
        jwks: str | None = None,
        leeway: float = 30.0,
        roles_claim: str = "roles",
        tenant_claim: str = "tenant",
        jwks_cache_seconds: float = 300.0,
    ) -> None:
        if secret is None and jwks is None:
            raise ConfigurationError("JWT needs a secret (HS256) or a JWKS (RS256/ES256)")
        if not issuer or not audience:
            raise ConfigurationError("JWT needs an issuer and an audience to check", setting="jwt")
        if secret is not None and len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"an HS256 secret needs at least {MIN_SECRET_BYTES} bytes", setting="jwt_secret"
            )
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ConfigurationError(
                f"leeway must be between 0 and {MAX_LEEWAY:.0f} seconds", setting="jwt_leeway"
            )
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.roles_claim = roles_claim
        self.tenant_claim = tenant_claim
        self._secret = secret
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._client: jwt.PyJWKClient | None = None
        if jwks is not None:
            if jwks.startswith(("https://", "http://")):
                self._client = jwt.PyJWKClient(
                    jwks, cache_jwk_set=True, lifespan=max(1, int(jwks_cache_seconds))
                )
            else:
                self._keys = self._load(Path(jwks))

    @staticmethod
    def _load(path: Path) -> dict[str | None, jwt.PyJWK]:
        try:
            keyset = jwt.PyJWKSet.from_json(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read the JWKS {path}: {exc}") from None
        except jwt.PyJWTError as exc:
            raise ConfigurationError(f"{path} is not a usable JWKS: {exc}") from None
        keys: dict[str | None, jwt.PyJWK] = {}
        for key in keyset.keys:
            if key.algorithm_name not in ASYMMETRIC:
                raise ConfigurationError(
                    f"{path}: key {key.key_id!r} is {key.algorithm_name}; only RS256 and ES256 "
                    "keys belong in a JWKS here (HS256 uses the shared secret)"
                )
            keys[key.key_id] = key
        if not keys:
            raise ConfigurationError(f"{path}: the JWKS holds no key")
        return keys

    def credential(self, headers: Mapping[str, str]) -> str | None:
        return bearer(headers)

    def openapi(self) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}

    async def _key(self, alg: str, kid: str | None) -> tuple[Any, str]:
        """The key for this header and the one algorithm it is pinned to."""
        if alg == "HS256" and self._secret is not None:
            return self._secret, "HS256"
        if self._client is not None:
            if kid is None:
                raise _fail("no key id (kid)")
            client = self._client
            try:
                found = await asyncio.to_thread(client.get_signing_key, kid)
            except jwt.PyJWKClientConnectionError:
                raise AuthenticationFailed("the token's keys cannot be fetched now") from None
            except jwt.PyJWTError:
                raise _fail("unknown key") from None
        else:
            picked = self._keys.get(kid)
            if picked is None and kid is None and len(self._keys) == 1:
                picked = next(iter(self._keys.values()))
            if picked is None:
                raise _fail("unknown key")
            found = picked
        if found.algorithm_name not in ASYMMETRIC:
            raise _fail("the key is not an RS256 or ES256 key")
        return found.key, found.algorithm_name

    async def authenticate(self, credential: str) -> Principal:
        try:
            header = jwt.get_unverified_header(credential)
        except jwt.PyJWTError:
            raise _fail("malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or (kid is not None and not isinstance(kid, str)):
            raise _fail("malformed header")
        key, pinned = await self._key(alg, kid)
        if alg != pinned:
            raise _fail(f"algorithm {alg} is not allowed for this key")
        try:
            claims = jwt.decode(
                credential,
                key,
                algorithms=[pinned],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _fail("expired") from None
        except jwt.ImmatureSignatureError:
            raise _fail("not yet valid") from None
        except jwt.InvalidAudienceError:
            raise _fail("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise _fail("wrong issuer") from None
        except jwt.InvalidSignatureError:
            raise _fail("bad signature") from None
        except jwt.PyJWTError as exc:
            raise _fail(type(exc).__name__) from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 200:
            raise _fail("sub must be a string of 1-200 characters")
        tenant = claims.get(self.tenant_claim)
        if tenant is not None and (
            not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant)
        ):
            raise _fail(f"claim {self.tenant_claim!r} is not a tenant id")
        scopes = _strings(claims.get("scope"), "scope") | _strings(claims.get("scp"), "scp")
        return Principal(
            id=subject,
            roles=_strings(claims.get(self.roles_claim), self.roles_claim),
            scopes=scopes,
            tenant=tenant,
            via="jwt",
        )
