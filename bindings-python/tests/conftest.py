"""Fixtures: a real `ductape server --dev` process per test module, and a slow proxy."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ductape_bin() -> str:
    path = os.environ.get("DUCTAPE_BIN") or str(ROOT / "target" / "debug" / "ductape")
    if not Path(path).exists():
        pytest.fail(f"{path} not found: run `cargo build -p ductape-cli` (scripts/test does)")
    return path


class Server:
    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [ductape_bin(), "server", "--dev", "--addr", "127.0.0.1:0", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "DUCTAPE_ACCESS_KEY"},
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip().removeprefix("DUCTAPE_URL=")
        self.access_key = self.proc.stdout.readline().strip().removeprefix("DUCTAPE_ACCESS_KEY=")
        assert self.url.startswith("http://") and self.access_key.startswith("dtpk_")
        self.logs: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.logs.append(line)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def env(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """Points DUCTAPE_URL / DUCTAPE_ACCESS_KEY at the test server."""
    monkeypatch.setenv("DUCTAPE_URL", server.url)
    monkeypatch.setenv("DUCTAPE_ACCESS_KEY", server.access_key)
    return server


@pytest.fixture
def unique_key(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name[:40]}_{time.monotonic_ns()}".replace("[", "_").replace("]", "_").replace("-", "_")


class _TcpProxy:
    """A TCP proxy to `upstream` on a free local port: each accepted connection is handed,
    with its own connection upstream, to `_relay` on a thread of its own."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            up = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        self._relay(client, up)

    def _relay(self, client: socket.socket, up: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def _shut(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class SlowProxy(_TcpProxy):
    """A TCP proxy that holds every request for `delay` seconds before forwarding it, so a
    call is observably in flight (pooled connections included)."""

    def __init__(self, upstream: str, delay: float) -> None:
        self.delay = delay
        super().__init__(upstream)

    def _relay(self, client: socket.socket, up: socket.socket) -> None:
        def pipe(a: socket.socket, b: socket.socket, delay: float) -> None:
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    time.sleep(delay)
                    b.sendall(data)
            except OSError:
                pass
            finally:
                _shut(a, b)

        threading.Thread(target=pipe, args=(client, up, self.delay), daemon=True).start()
        pipe(up, client, 0.0)


class ClosingProxy(_TcpProxy):
    """A TCP proxy that closes a client connection once no answer byte has passed for
    `idle` seconds, as a server or load balancer closes an idle keep-alive connection (a
    FIN, no `Connection: close`)."""

    def __init__(self, upstream: str, idle: float) -> None:
        self.idle = idle
        super().__init__(upstream)

    def _relay(self, client: socket.socket, up: socket.socket) -> None:
        threading.Thread(target=self._pump, args=(client, up, None), daemon=True).start()
        self._pump(up, client, self.idle)

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket, idle: float | None) -> None:
        a.settimeout(idle)
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        _shut(a, b)
