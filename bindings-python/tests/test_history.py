"""Versions, rollback and the trash from Python (sync and asyncio): the same core as the
CLI and Node."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Server
from ductape import (
    AsyncDuctape,
    ConflictError,
    Ductape,
    NotFoundError,
    SecretVersion,
)


@pytest.fixture
def own_server() -> Server:
    s = Server()
    yield s
    s.stop()


def test_versions_fetch_a_version_and_roll_back(own_server: Server) -> None:
    d = Ductape(access_key=own_server.access_key, url=own_server.url)
    d.init()
    d.secrets.create(key="PY_TOKEN", value="v1")
    for v in range(2, 6):
        d.secrets.update("PY_TOKEN", value=f"v{v}")
    assert [d.secrets.fetch("PY_TOKEN", version=v).value for v in range(1, 6)] == [
        f"v{v}" for v in range(1, 6)
    ]
    history = d.secrets.versions("PY_TOKEN")
    assert [h.version for h in history] == [5, 4, 3, 2, 1]
    assert isinstance(history[0], SecretVersion)
    assert history[0].current and history[0].fields == ["value"]
    assert history[-1].action == "create" and history[-1].status == "active"
    assert "v1" not in repr(history)

    with pytest.raises(ConflictError):
        d.secrets.rollback("PY_TOKEN", 2, if_version=4)
    rolled = d.secrets.rollback("PY_TOKEN", 2, if_version=5)
    assert rolled.version == 6
    assert d.secrets.fetch("PY_TOKEN").value == "v2"
    newest = d.secrets.versions("PY_TOKEN")[0]
    assert (newest.action, newest.rollback_of) == ("rollback", 2)
    with pytest.raises(NotFoundError, match="no version 40"):
        d.secrets.fetch("PY_TOKEN", version=40)


def test_delete_undelete_and_permanent_delete(own_server: Server) -> None:
    d = Ductape(access_key=own_server.access_key, url=own_server.url)
    d.init()
    d.secrets.create(key="PY_GONE", value="kept")
    assert d.secrets.delete("PY_GONE") is True
    with pytest.raises(NotFoundError):
        d.secrets.fetch("PY_GONE")
    assert d.secrets.undelete("PY_GONE").version == 2
    assert d.secrets.fetch("PY_GONE").value == "kept"
    assert d.secrets.delete("PY_GONE", permanent=True) is True
    with pytest.raises(NotFoundError, match="not in the trash"):
        d.secrets.undelete("PY_GONE")

    async def run() -> tuple[str, int, int]:
        a = AsyncDuctape(access_key=own_server.access_key, url=own_server.url)
        await a.init()
        await a.secrets.create(key="PY_ASYNC", value="a1")
        await a.secrets.update("PY_ASYNC", value="a2")
        old = await a.secrets.fetch("PY_ASYNC", version=1)
        back = await a.secrets.rollback("PY_ASYNC", 1)
        await a.secrets.delete("PY_ASYNC")
        undeleted = await a.secrets.undelete("PY_ASYNC")
        return old.value, back.version, len(await a.secrets.versions("PY_ASYNC")) + undeleted.version

    assert asyncio.run(run()) == ("a1", 3, 4 + 4)
