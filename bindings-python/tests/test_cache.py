"""The value cache from Python: hits, fresh reads, own changes, stale-if-error with a
warning through ``logging`` (the same core as Rust and Node)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
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


def test_watch_and_a_watching_cache(own_server: Server) -> None:
    import threading

    admin = Ductape(access_key=own_server.access_key, url=own_server.url)
    admin.init()
    admin.secrets.create(key="PY_LIVE", value="one")
    d = Ductape(access_key=own_server.access_key, url=own_server.url, cache_ttl=600, cache_watch=True)
    d.init()
    assert d.secrets.fetch("PY_LIVE").value == "one"
    heard: list[object] = []

    def listen() -> None:
        for change in d.watch():
            heard.append(change)
            return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    time.sleep(0.5)
    admin.secrets.update("PY_LIVE", value="two")
    t.join(5)
    from ductape import Change

    assert heard == [Change(kind="update", key="PY_LIVE", version=2)]
    deadline = time.monotonic() + 3
    while d.secrets.fetch("PY_LIVE").value != "two":
        assert time.monotonic() < deadline, "the watching cache kept the old value"
        time.sleep(0.05)

    async def first_async() -> Change:
        a = AsyncDuctape(access_key=own_server.access_key, url=own_server.url)
        await a.init()
        changes = a.watch()
        pending = asyncio.ensure_future(changes.__anext__())
        await asyncio.sleep(0.5)
        await a.secrets.delete("PY_LIVE")
        return await asyncio.wait_for(pending, 5)

    got = asyncio.run(first_async())
    assert (got.kind, got.key) == ("delete", "PY_LIVE")


def test_snapshot_offline_start(
    own_server: Server, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    import os
    import pathlib

    path = str(pathlib.Path(str(tmp_path)) / "app.snap")
    opts = {"cache_ttl": 0.2, "stale_if_error": 600, "cache_snapshot": path, "max_retries": 0}
    d = Ductape(access_key=own_server.access_key, url=own_server.url, **opts)  # type: ignore[arg-type]
    d.init()
    d.secrets.create(key="PY_SNAP", value="py-snapshot-canary")
    assert d.secrets.fetch("PY_SNAP").value == "py-snapshot-canary"
    with open(path, "rb") as f:
        assert b"py-snapshot-canary" not in f.read()
    assert os.stat(path).st_mode & 0o777 == 0o600
    url = own_server.url
    own_server.stop()
    offline = Ductape(access_key=own_server.access_key, url=url, **opts)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="ductape"):
        offline.init()
    assert "started from the cache snapshot" in caplog.text
    assert offline.secrets.fetch("PY_SNAP").value == "py-snapshot-canary"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_answers_from_objects_kept_before_the_fork(
    own_server: Server,
) -> None:
    d = Ductape(access_key=own_server.access_key, url=own_server.url, cache_ttl=600)
    d.init()
    d.secrets.create(key="PY_FORKED", value="before")
    assert d.secrets.fetch("PY_FORKED").value == "before"
    assert d.secrets.fetch("PY_FORKED").value == "before", "a hit, kept for the fast path"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: its client (and cache) is its own from here on
        os.close(r)
        try:
            d.secrets.update("PY_FORKED", value="after")
            os.write(w, d.secrets.fetch("PY_FORKED").value.encode())
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.monotonic() + 20
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the forked child hung")
        time.sleep(0.05)
    assert os.read(r, 100).decode() == "after"
    assert d.secrets.fetch("PY_FORKED", fresh=True).value == "after"
