"""Authorization: a ``Policy`` maps roles and scopes to permissions; a
principal may do what one of its roles or scopes grants, and nothing else.

Permission names are a stable set (an operations console uses the same):

| permission | allows |
| --- | --- |
| ``command:<Name>`` | sending that command (and reading its outcome by id) |
| ``query:<name>`` | that named query |
| ``stream:read`` | a stream's history and its state (``/streams/…``) |
| ``status:read`` | ``/status``: projections, lag, the consumer, the relay |
| ``actor:on-behalf`` | naming another actor (``Eventfold-Actor``), recorded as ``on_behalf_of`` |
| ``projection:rebuild``, ``projection:pause``, ``projection:resume`` | read-model operations |
| ``parked:retry``, ``parked:skip`` | parked bus messages |
| ``subject:forget`` | crypto-shredding a data subject |
| ``store:verify``, ``store:export`` | checking the hash chains, exporting the log |
| ``tenant:create``, ``tenant:list``, ``tenant:delete`` | tenant management |

A grant may end in ``*``: ``command:*`` is every command, ``*`` everything."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec

from eventfold.errors import ConfigurationError, PermissionDenied
from eventfold.security.principal import Principal

ADMIN_PERMISSIONS = (
    "actor:on-behalf",
    "parked:retry",
    "parked:skip",
    "projection:pause",
    "projection:rebuild",
    "projection:resume",
    "status:read",
    "store:export",
    "store:verify",
    "stream:read",
    "subject:forget",
    "tenant:create",
    "tenant:delete",
    "tenant:list",
)
"""Every fixed permission name; ``command:<Name>`` and ``query:<name>`` add
one per command and per named query."""

_FAMILIES = ("command:", "query:")
ON_BEHALF = "actor:on-behalf"


def command_permission(name: str) -> str:
    return f"command:{name}"


def query_permission(name: str) -> str:
    return f"query:{name}"


def _check_grant(grant: object, where: str) -> str:
    if not isinstance(grant, str) or not grant:
        raise ConfigurationError(f"{where}: a grant is a permission name, not {grant!r}")
    if grant == "*" or grant in ADMIN_PERMISSIONS:
        return grant
    stem = grant[:-1] if grant.endswith("*") else grant
    if any(stem.startswith(f) and (stem != f or grant.endswith("*")) for f in _FAMILIES):
        return grant
    if grant.endswith("*") and any(p.startswith(stem) for p in ADMIN_PERMISSIONS):
        return grant
    raise ConfigurationError(f"{where}: unknown permission {grant!r}", setting="policy")


class Policy:
    """``roles`` and ``scopes`` each map a name to the permissions it grants.
    Anything not granted is denied."""

    def __init__(
        self,
        roles: Mapping[str, Iterable[str]] | None = None,
        scopes: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.roles = {
            name: frozenset(_check_grant(g, f"role {name}") for g in grants)
            for name, grants in (roles or {}).items()
        }
        self.scopes = {
            name: frozenset(_check_grant(g, f"scope {name}") for g in grants)
            for name, grants in (scopes or {}).items()
        }

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        """A TOML file with ``[roles]`` and/or ``[scopes]`` tables of lists::

        [roles]
        clerk = ["command:PlaceOrder", "command:AddLine", "query:*"]
        auditor = ["stream:read", "store:verify", "store:export"]
        """
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read the policy {path}: {exc}") from None
        unknown = sorted(set(data) - {"roles", "scopes"})
        if unknown:
            raise ConfigurationError(f"{path}: unknown tables {unknown}", setting="policy")
        try:
            parsed = msgspec.convert(data, dict[str, dict[str, list[str]]])
        except msgspec.ValidationError as exc:
            raise ConfigurationError(f"{path}: {exc}", setting="policy") from None
        return cls(parsed.get("roles"), parsed.get("scopes"))

    def grants(self, principal: Principal) -> frozenset[str]:
        out: set[str] = set()
        for role in principal.roles:
            out |= self.roles.get(role, frozenset())
        for scope in principal.scopes:
            out |= self.scopes.get(scope, frozenset())
        return frozenset(out)

    def allows(self, principal: Principal, permission: str) -> bool:
        for grant in self.grants(principal):
            if grant == permission or (grant.endswith("*") and permission.startswith(grant[:-1])):
                return True
        return False

    def require(self, principal: Principal, permission: str) -> None:
        if not self.allows(principal, permission):
            raise PermissionDenied(principal.id, permission)
