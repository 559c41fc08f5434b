"""The documented flow, sync and async, with the documented fields."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from conftest import Server
from ductape import AsyncDuctape, Ductape, NotFoundError, Secret, SecretMetadata, SecretRevokedError

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_the_documented_flow(server: Server) -> None:
    ductape = Ductape(access_key=server.access_key, url=server.url)
    ductape.init()
    expires = int(time.time()) + 365 * 24 * 60 * 60
    s = ductape.secrets.create(
        key="STRIPE_API_KEY",
        value="sk_live_51ABC123...",
        description="Production Stripe API key for payment processing",
        token_type="api",
        scope=["stripe_payments", "checkout_service"],
        envs=["prd", "staging"],
        expires_at=expires,
    )
    assert isinstance(s, SecretMetadata) and not isinstance(s, Secret)
    assert re.fullmatch(r"[0-9a-f]{24}", s.id)
    assert s.workspace_id.startswith("ws_")
    assert (s.key, s.token_type, s.scope, s.envs, s.expires_at) == (
        "STRIPE_API_KEY", "api", ["stripe_payments", "checkout_service"], ["prd", "staging"], expires,
    )
    assert ISO_MS.match(s.created_at) and s.created_at == s.updated_at
    assert (s.version, s.status) == (1, "active")
    d = s.to_dict()
    assert set(d) == {"_id", "workspace_id", "key", "description", "token_type", "scope", "envs",
                      "expires_at", "createdAt", "updatedAt", "version", "status"}
    assert "value" not in d

    listed = {m.key: m for m in ductape.secrets.fetch_all()}
    assert listed["STRIPE_API_KEY"] == s
    assert not hasattr(listed["STRIPE_API_KEY"], "value")

    fetched = ductape.secrets.fetch("STRIPE_API_KEY")
    assert fetched.value == "sk_live_51ABC123..."
    assert fetched.to_dict()["value"] == "sk_live_51ABC123..."
    assert fetched.description == "Production Stripe API key for payment processing"

    later = int(time.time()) + 180 * 24 * 60 * 60
    u = ductape.secrets.update("STRIPE_API_KEY", value="sk_live_51NEW_KEY...",
                               description="Rotated Stripe API key - January 2025", expires_at=later)
    assert (u.version, u.expires_at) == (2, later)
    assert ductape.secrets.fetch("STRIPE_API_KEY").value == "sk_live_51NEW_KEY..."

    m = ductape.secrets.update("STRIPE_API_KEY", scope=["stripe_payments", "subscription_service"],
                               envs=("dev", "staging", "prd"))
    assert m.scope == ["stripe_payments", "subscription_service"] and m.envs == ["dev", "staging", "prd"]
    assert ductape.secrets.fetch("STRIPE_API_KEY").value == "sk_live_51NEW_KEY..."
    cleared = ductape.secrets.update("STRIPE_API_KEY", description=None, expires_at=None)
    assert cleared.description is None and cleared.expires_at is None

    assert ductape.secrets.revoke("STRIPE_API_KEY") is True
    with pytest.raises(SecretRevokedError) as e:
        ductape.secrets.fetch("STRIPE_API_KEY")
    assert (e.value.status, e.value.code) == (410, "secret_revoked")
    assert str(e.value) == "Secret 'STRIPE_API_KEY' has been revoked"
    assert ductape.secrets.restore("STRIPE_API_KEY").status == "active"

    assert ductape.secrets.delete("STRIPE_API_KEY") is True
    with pytest.raises(NotFoundError):
        ductape.secrets.fetch("STRIPE_API_KEY")


def test_configuration_comes_from_the_environment(env: Server) -> None:
    ductape = Ductape()
    ductape.init()
    assert ductape.url == env.url
    assert env.access_key.startswith(f"dtpk_{ductape.access_key_id}.")


def test_the_async_flow(server: Server) -> None:
    async def main() -> None:
        ductape = AsyncDuctape(access_key=server.access_key, url=server.url)
        await ductape.init()
        created = await ductape.secrets.create(key="ASYNC_KEY", value="async-value", envs=["dev"])
        assert created.envs == ["dev"]
        assert any(m.key == "ASYNC_KEY" for m in await ductape.secrets.fetch_all())
        assert (await ductape.secrets.fetch("ASYNC_KEY")).value == "async-value"
        assert (await ductape.secrets.update("ASYNC_KEY", value="v2")).version == 2
        # Many coroutines at once.
        got = await asyncio.gather(*(ductape.secrets.fetch("ASYNC_KEY") for _ in range(50)))
        assert {s.value for s in got} == {"v2"}
        assert await ductape.secrets.revoke("ASYNC_KEY") is True
        with pytest.raises(SecretRevokedError):
            await ductape.secrets.fetch("ASYNC_KEY")
        assert (await ductape.secrets.restore("ASYNC_KEY")).status == "active"
        assert await ductape.secrets.delete("ASYNC_KEY") is True
        with pytest.raises(NotFoundError):
            await ductape.secrets.fetch("ASYNC_KEY")

    asyncio.run(main())


def test_iterate_pages_through_every_secret_in_key_order(server: Server) -> None:
    ductape = Ductape(access_key=server.access_key, url=server.url)
    ductape.init()
    names = [f"ITER_{i:02}" for i in range(7)]
    for k in reversed(names):
        ductape.secrets.create(key=k, value="v")
    seen = [s.key for s in ductape.secrets.iterate(page_size=2) if s.key.startswith("ITER_")]
    assert seen == names
    assert all(isinstance(s, SecretMetadata) for s in ductape.secrets.iterate(page_size=3))
    with pytest.raises(Exception, match="limit"):
        list(ductape.secrets.iterate(page_size=0))

    async def main() -> list[str]:
        a = AsyncDuctape(access_key=server.access_key, url=server.url)
        await a.init()
        return [s.key async for s in a.secrets.iterate(page_size=2) if s.key.startswith("ITER_")]

    assert asyncio.run(main()) == names
    for k in names:
        ductape.secrets.delete(k)
