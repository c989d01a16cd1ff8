"""Authentication: the ``Authenticator`` Protocol and ``Security``, which
asks each configured authenticator in turn and applies the ``Policy``.

An authenticator looks for its own kind of credential in a request's headers
(``credential``); when it finds one it either makes a ``Principal`` of it or
raises ``AuthenticationFailed``. A request with no credential of any kind
fails too: once security is configured, nothing is anonymous."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from eventfold.errors import AuthenticationFailed, ConfigurationError
from eventfold.security.policy import Policy
from eventfold.security.principal import Principal

MAX_CREDENTIAL = 8192
"""Longer credentials are refused before any parsing."""


@runtime_checkable
class Authenticator(Protocol):
    scheme: str
    """The HTTP authentication scheme named in ``WWW-Authenticate``
    (``Bearer``, ``ApiKey``) and, lower-cased, the OpenAPI scheme's name."""

    def credential(self, headers: Mapping[str, str]) -> str | None:
        """This authenticator's credential in ``headers``, if there is one."""
        ...

    async def authenticate(self, credential: str) -> Principal:
        """The principal the credential proves, or ``AuthenticationFailed``."""
        ...

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI security scheme object describing this credential."""
        ...


def bearer(headers: Mapping[str, str], scheme: str = "bearer") -> str | None:
    """The token of an ``Authorization: <scheme> <token>`` header."""
    value = headers.get("authorization")
    if value is None:
        return None
    given, _, token = value.strip().partition(" ")
    if given.lower() != scheme:
        return None
    return token.strip()


class Security:
    """Authenticators tried in order, and the policy their principals are
    held to. ``tenants``: whether principals must be bound to a tenant."""

    def __init__(
        self,
        authenticators: Sequence[Authenticator],
        policy: Policy,
        *,
        realm: str = "eventfold",
    ) -> None:
        if not authenticators:
            raise ConfigurationError("security needs at least one authenticator")
        self.authenticators = list(authenticators)
        self.policy = policy
        self.realm = realm

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value: every scheme accepted here."""
        return ", ".join(f'{a.scheme} realm="{self.realm}"' for a in self.authenticators)

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        for authenticator in self.authenticators:
            found = authenticator.credential(headers)
            if found is None:
                continue
            if not found or len(found) > MAX_CREDENTIAL:
                raise AuthenticationFailed("malformed credentials", challenge=self.challenge)
            try:
                return await authenticator.authenticate(found)
            except AuthenticationFailed as exc:
                raise AuthenticationFailed(exc.reason, challenge=self.challenge) from None
        raise AuthenticationFailed("credentials required", challenge=self.challenge)

    def require(self, principal: Principal, permission: str) -> None:
        self.policy.require(principal, permission)

    def allows(self, principal: Principal, permission: str) -> bool:
        return self.policy.allows(principal, permission)

    def openapi(self) -> dict[str, dict[str, Any]]:
        return {a.scheme.lower(): a.openapi() for a in self.authenticators}
