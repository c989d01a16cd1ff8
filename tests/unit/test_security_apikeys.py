"""API keys: stored as digests only, several per principal, revocable,
bound to a tenant; unknown, malformed and revoked keys are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventfold.errors import AuthenticationFailed, ConfigurationError, PermissionDenied
from eventfold.security import (
    APIKeyAuthenticator,
    MemoryAPIKeyStore,
    Policy,
    Principal,
    create_key,
    open_api_keys,
)
from eventfold.security.apikeys import split_key


async def test_keys_are_stored_hashed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "control.db"
    store = open_api_keys(f"sqlite:///{path}")
    try:
        auth = APIKeyAuthenticator(store)
        first, key1 = await create_key(store, "ana", tenant="acme", roles=["clerk"])
        second, key2 = await create_key(store, "ana", tenant="acme", roles=["viewer"])
        assert first.key_id != second.key_id
        assert (await auth.authenticate(key1)).roles == {"clerk"}
        principal = await auth.authenticate(key2)
        assert principal == Principal(
            id="ana", roles=frozenset({"viewer"}), tenant="acme", via="api-key"
        )
        assert {k.key_id for k in await store.list(tenant="acme")} == {
            first.key_id,
            second.key_id,
        }
        assert await store.revoke(first.key_id)
        assert not await store.revoke(first.key_id)
        with pytest.raises(AuthenticationFailed, match="revoked"):
            await auth.authenticate(key1)
        assert (await auth.authenticate(key2)).id == "ana"  # the other key still works
    finally:
        await store.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for key in (key1, key2):
        parts = split_key(key)
        assert parts is not None
        secret = parts[1].encode()  # efk_<id>_<secret>: the secret may hold "_" too
        assert secret not in stored and key.encode() not in stored


async def test_unknown_and_malformed_keys_are_refused() -> None:
    store = MemoryAPIKeyStore()
    auth = APIKeyAuthenticator(store)
    info, key = await create_key(store, "bo")
    key_id = info.key_id
    for bad in (
        key[:-1] + ("A" if key[-1] != "A" else "B"),  # the right id, a wrong secret
        f"efk_{'0' * 16}_{key.rsplit('_', 1)[-1]}",  # an unknown id
        "efk_short",
        "not-a-key",
        f"efk_{key_id}",
    ):
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate(bad)
    assert (await auth.authenticate(key)).id == "bo"
    assert await store.delete_tenant("none") == 0


def test_policy_denies_what_it_does_not_grant(tmp_path: Path) -> None:
    policy = Policy(
        roles={"clerk": ["command:PlaceOrder", "query:*"], "root": ["*"]},
        scopes={"orders:admin": ["projection:*"]},
    )
    clerk = Principal(id="ana", roles=frozenset({"clerk"}))
    assert policy.allows(clerk, "command:PlaceOrder")
    assert policy.allows(clerk, "query:anything")
    assert not policy.allows(clerk, "command:CancelOrder")
    assert not policy.allows(clerk, "subject:forget")
    assert not policy.allows(Principal(id="nobody"), "query:order")
    assert not policy.allows(Principal(id="x", roles=frozenset({"unknown"})), "query:order")
    scoped = Principal(id="ops", scopes=frozenset({"orders:admin"}))
    assert policy.allows(scoped, "projection:rebuild")
    assert not policy.allows(scoped, "store:export")
    assert policy.allows(Principal(id="r", roles=frozenset({"root"})), "tenant:delete")
    with pytest.raises(PermissionDenied):
        policy.require(clerk, "store:verify")
    with pytest.raises(ConfigurationError, match="unknown permission"):
        Policy(roles={"x": ["store:erase"]})
    path = tmp_path / "policy.toml"
    path.write_text('[roles]\nclerk = ["command:PlaceOrder"]\n[other]\nx = 1\n')
    with pytest.raises(ConfigurationError, match="unknown tables"):
        Policy.from_file(path)
    path.write_text('[roles]\nclerk = ["command:PlaceOrder", "status:read"]\n')
    assert Policy.from_file(path).allows(clerk, "status:read")


async def test_a_cached_key_still_needs_its_secret() -> None:
    store = MemoryAPIKeyStore()
    auth = APIKeyAuthenticator(store, cache_seconds=60)
    _, key = await create_key(store, "cy")
    assert (await auth.authenticate(key)).id == "cy"
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B"))
    uncached = APIKeyAuthenticator(store)
    info = (await store.list())[0]
    await store.revoke(info.key_id)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await uncached.authenticate(key)
    with pytest.raises(ConfigurationError):
        APIKeyAuthenticator(store, cache_seconds=-1)
