"""Tenants: each one's events, read models, outcomes, subject keys, bus
subjects and checkpoints kept apart (a file or schema of its own, placed on
one of several servers), and their lifecycle (create, list, delete)."""

from eventfold.tenancy.catalog import TenantInfo, Tenants
from eventfold.tenancy.placement import (
    Place,
    Tenancy,
    TenantServer,
    destroy,
    register_tenant_server,
)

__all__ = [
    "Place",
    "Tenancy",
    "TenantInfo",
    "TenantServer",
    "Tenants",
    "destroy",
    "register_tenant_server",
]
