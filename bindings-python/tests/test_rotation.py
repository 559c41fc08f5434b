"""Key rotation from Python: one call, the same core as the CLI and Node."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest
from conftest import Server, ductape_bin
from ductape import AsyncDuctape, Ductape, PermissionDeniedError


@pytest.fixture
def own_server() -> Server:
    s = Server()
    yield s
    s.stop()


def _bound_key(server: Server, app: str) -> str:
    out = subprocess.run(
        [ductape_bin(), "access-keys", "create", "--name", app, "--permissions", "list,read", "--app", app],
        env={**os.environ, "DUCTAPE_URL": server.url, "DUCTAPE_ACCESS_KEY": server.access_key},
        capture_output=True, text=True, check=True,
    )
    return out.stdout.strip().removeprefix("DUCTAPE_ACCESS_KEY=")


def test_rotate_key_reseals_and_every_session_keeps_reading(own_server: Server) -> None:
    admin = Ductape(access_key=own_server.access_key, url=own_server.url)
    admin.init()
    admin.secrets.create(key="WEB_TOKEN", value="web-value", scope=["web"])
    admin.secrets.create(key="API_TOKEN", value="api-value", scope=["api"])
    web = Ductape(access_key=_bound_key(own_server, "web"), url=own_server.url)
    web.init()  # a session opened before the rotation

    report = admin.rotate_key()
    assert report == {"generation": 2, "resealed": 2, "started": True}
    assert web.secrets.fetch("WEB_TOKEN").value == "web-value"
    assert admin.secrets.fetch("API_TOKEN").value == "api-value"
    with pytest.raises(PermissionDeniedError, match="unbound admin"):
        web.rotate_key()

    async def again() -> dict[str, object]:
        a = AsyncDuctape(access_key=own_server.access_key, url=own_server.url)
        await a.init()
        return await a.rotate_key()

    assert asyncio.run(again())["generation"] == 3
    assert web.secrets.fetch("WEB_TOKEN").value == "web-value"


def test_if_version_guards_every_change(own_server: Server) -> None:
    from ductape import ConflictError

    d = Ductape(access_key=own_server.access_key, url=own_server.url)
    d.init()
    d.secrets.create(key="GUARDED", value="one")
    with pytest.raises(ConflictError):
        d.secrets.update("GUARDED", value="two", if_version=5)
    assert d.secrets.update("GUARDED", value="two", if_version=1).version == 2
    with pytest.raises(ConflictError):
        d.secrets.revoke("GUARDED", if_version=1)
    assert d.secrets.revoke("GUARDED", if_version=2)
    assert d.secrets.restore("GUARDED", if_version=3).version == 4
    with pytest.raises(ConflictError):
        d.secrets.delete("GUARDED", if_version=3)
    assert d.secrets.fetch("GUARDED").value == "two"
    assert d.secrets.delete("GUARDED", if_version=4)


def test_requests_name_the_python_sdk_in_user_agent() -> None:
    import socket
    import threading

    import ductape

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen: list[bytes] = []

    def answer() -> None:
        conn, _ = listener.accept()
        seen.append(conn.recv(65536))
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    port = listener.getsockname()[1]
    d = Ductape(access_key="dtpk_0123456789abcdef." + "A" * 43 + "." + "A" * 43,
                url=f"http://127.0.0.1:{port}", max_retries=0)
    with pytest.raises(ductape.DuctapeError):
        d.init()
    request = seen[0].decode().lower()
    assert "user-agent: ductape-python/" in request, request
