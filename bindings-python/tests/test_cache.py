"""The value cache from Python: hits, fresh reads, own changes, stale-if-error with a
warning through ``logging`` (the same core as Rust and Node)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from conftest import Server
from ductape import AsyncDuctape, Ductape, DuctapeConnectionError


@pytest.fixture
def own_server() -> Server:
    s = Server()
    yield s
    s.stop()


def test_cache_hits_fresh_reads_and_stale_if_error(
    own_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    admin = Ductape(access_key=own_server.access_key, url=own_server.url)
    admin.init()
    admin.secrets.create(key="PY_CACHED", value="one")
    d = Ductape(
        access_key=own_server.access_key,
        url=own_server.url,
        cache_ttl=0.3,
        stale_if_error=30,
        max_retries=0,
    )
    d.init()
    strict = Ductape(
        access_key=own_server.access_key, url=own_server.url, cache_ttl=0.3, max_retries=0
    )
    strict.init()
    assert d.secrets.fetch("PY_CACHED").value == "one"
    assert strict.secrets.fetch("PY_CACHED").value == "one"
    admin.secrets.update("PY_CACHED", value="two")
    assert d.secrets.fetch("PY_CACHED").value == "one"  # a hit within the TTL
    assert d.secrets.fetch("PY_CACHED", fresh=True).value == "two"
    d.secrets.update("PY_CACHED", value="three")  # own change: invalidated at once
    assert d.secrets.fetch("PY_CACHED").value == "three"

    own_server.stop()
    time.sleep(0.4)
    with caplog.at_level(logging.WARNING, logger="ductape"):
        got = d.secrets.fetch("PY_CACHED")
    assert got.value == "three"
    assert "past its TTL" in caplog.text and "three" not in caplog.text
    with pytest.raises(DuctapeConnectionError):
        strict.secrets.fetch("PY_CACHED")


def test_cache_options_are_checked(own_server: Server) -> None:
    with pytest.raises(ValueError, match="cache_ttl"):
        Ductape(access_key=own_server.access_key, url=own_server.url, stale_if_error=5)
    with pytest.raises(ValueError, match="cache ttl"):
        Ductape(access_key=own_server.access_key, url=own_server.url, cache_ttl=-1)

    async def run() -> str:
        a = AsyncDuctape(access_key=own_server.access_key, url=own_server.url, cache_ttl=60)
        await a.init()
        await a.secrets.create(key="PY_ASYNC_CACHED", value="x")
        await a.secrets.fetch("PY_ASYNC_CACHED")
        return (await a.secrets.fetch("PY_ASYNC_CACHED", fresh=True)).value

    assert asyncio.run(run()) == "x"
