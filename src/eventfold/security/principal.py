"""Who is asking: a ``Principal`` made from checked credentials, and the
tenant ids it may be bound to."""

from __future__ import annotations

import re

import msgspec

from eventfold.errors import InvalidArgument

TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9_]{0,39}")
"""A tenant id: lower-case letters, digits and ``_``, at most 40. It becomes
part of schema names, file names and bus subjects, so it is checked here once
and nothing else needs quoting rules of its own."""


def check_tenant(tenant: object) -> str:
    if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
        raise InvalidArgument(
            f"invalid tenant id {tenant!r}: 1-40 of a-z, 0-9 and '_', not starting with '_'",
            argument="tenant",
        )
    return tenant


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller: its id (the audit actor), its roles and
    scopes (what a ``Policy`` grants permissions to), the tenant its
    credentials are bound to, and how it authenticated (``jwt``,
    ``api-key``)."""

    id: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    tenant: str | None = None
    via: str = ""
