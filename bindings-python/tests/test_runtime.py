"""The GIL is released, Ctrl-C interrupts, forked and spawned children work."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest
from conftest import ClosingProxy, Server, SlowProxy
from ductape import Ductape

DELAY = 0.4


def test_threads_fetch_concurrently_because_the_gil_is_released(server: Server) -> None:
    admin = Ductape(access_key=server.access_key, url=server.url)
    admin.init()
    admin.secrets.create(key="GIL_KEY", value="gil")
    proxy = SlowProxy(server.url, DELAY)
    d = Ductape(access_key=server.access_key, url=proxy.url)
    d.init()
    intervals: list[tuple[float, float]] = []
    lock = threading.Lock()
    ticks = 0

    def fetch() -> None:
        start = time.monotonic()
        assert d.secrets.fetch("GIL_KEY").value == "gil"
        with lock:
            intervals.append((start, time.monotonic()))

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    # The main thread keeps running Python while the calls are in flight.
    while any(t.is_alive() for t in threads):
        ticks += 1
        time.sleep(0.01)
    for t in threads:
        t.join()
    proxy.close()
    assert len(intervals) == 8
    # All eight calls were in flight at the same moment: the latest start precedes the
    # earliest end. Serialised calls could not overlap at all.
    assert max(s for s, _ in intervals) < min(e for _, e in intervals)
    assert ticks > 10


def test_ctrl_c_interrupts_a_slow_call_promptly(server: Server) -> None:
    proxy = SlowProxy(server.url, 30)
    d = Ductape(access_key=server.access_key, url=proxy.url, timeout=60)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        d.init()
    assert time.monotonic() - start < 2
    proxy.close()


def test_ctrl_c_interrupts_a_call_running_on_the_calling_thread(server: Server) -> None:
    proxy = SlowProxy(server.url, 0)
    d = Ductape(access_key=server.access_key, url=proxy.url, timeout=60)
    d.init()
    # A synchronous read runs on this thread with a connection of its own, opened now,
    # through a proxy that holds it.
    proxy.delay = 30
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        d.secrets.fetch("ANY_KEY")
    assert time.monotonic() - start < 2
    proxy.close()


def test_a_thread_between_calls_holds_up_no_other_thread(server: Server) -> None:
    """Each thread's calls run on that thread, on connections it alone uses (driven only
    while it is in a call): a thread that made a call and now waits on something else must
    not hold up another thread's call."""
    d = Ductape(access_key=server.access_key, url=server.url, timeout=10)
    d.init()
    d.secrets.create(key="IDLE_KEY", value="idle")
    release = threading.Event()
    first_done = threading.Event()

    def first() -> None:
        assert d.secrets.fetch("IDLE_KEY").value == "idle"
        first_done.set()
        release.wait(30)  # between calls, its connection idle in its pool
        assert d.secrets.fetch("IDLE_KEY").value == "idle"

    t = threading.Thread(target=first)
    t.start()
    assert first_done.wait(10)
    start = time.monotonic()
    results: list[str] = []
    others = [threading.Thread(target=lambda: results.append(d.secrets.fetch("IDLE_KEY").value)) for _ in range(4)]
    for o in others:
        o.start()
    for o in others:
        o.join(10)
    assert d.secrets.fetch("IDLE_KEY").value == "idle"
    assert results == ["idle"] * 4
    assert time.monotonic() - start < 5, "a call waited on another thread's connection"
    release.set()
    t.join(10)
    assert not t.is_alive()


def test_a_connection_closed_between_calls_costs_the_next_call_nothing(server: Server) -> None:
    """A thread's connection is driven only during its calls, so it learns of the other end
    closing it while idle only at the next call: that call (a create, never re-sent) must
    still succeed."""
    proxy = ClosingProxy(server.url, 0.3)
    d = Ductape(access_key=server.access_key, url=proxy.url, max_retries=0)
    d.init()
    for i in range(3):
        d.secrets.create(key=f"CLOSED_{i}", value="v")
        time.sleep(0.8)  # the proxy closes the idle connection meanwhile
        assert d.secrets.fetch(f"CLOSED_{i}").value == "v"
        time.sleep(0.8)
    proxy.close()


def _child_fetch(d: Ductape, key: str, q: multiprocessing.Queue[str]) -> None:
    q.put(d.secrets.fetch(key).value)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_uses_the_parents_client(server: Server) -> None:
    d = Ductape(access_key=server.access_key, url=server.url)
    d.init()
    d.secrets.create(key="FORK_KEY", value="from-the-parent")
    # Warm the parent's runtime and connection pool so the child inherits live state.
    assert d.secrets.fetch("FORK_KEY").value == "from-the-parent"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            value = d.secrets.fetch("FORK_KEY").value
            d.secrets.update("FORK_KEY", value="from-the-child")
            os.write(w, value.encode())
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the forked child hung")
    assert os.read(r, 100).decode() == "from-the-parent"
    assert d.secrets.fetch("FORK_KEY").value == "from-the-child", "the parent still works too"


def test_multiprocessing_fork_and_spawn_children(server: Server) -> None:
    d = Ductape(access_key=server.access_key, url=server.url)
    d.init()
    d.secrets.create(key="MP_KEY", value="mp-value")
    d.secrets.fetch("MP_KEY")
    for method in ("fork", "spawn"):
        if method not in multiprocessing.get_all_start_methods():
            continue
        ctx = multiprocessing.get_context(method)
        q: multiprocessing.Queue[str] = ctx.Queue()
        if method == "fork":
            p = ctx.Process(target=_child_fetch, args=(d, "MP_KEY", q))
        else:
            # A spawned child starts from nothing: it makes its own client from the env.
            p = ctx.Process(target=_spawned_fetch, args=(server.url, server.access_key, "MP_KEY", q))
        p.start()
        p.join(30)
        assert p.exitcode == 0, f"{method} child failed or hung"
        assert q.get(timeout=5) == "mp-value"


def _spawned_fetch(url: str, key_text: str, key: str, q: multiprocessing.Queue[str]) -> None:
    d = Ductape(access_key=key_text, url=url)
    d.init()
    q.put(d.secrets.fetch(key).value)


def test_a_cold_import_loads_no_logging() -> None:
    # `logging` took 15% of a cold `import ductape`: it is imported only to warn.
    import subprocess
    import sys

    code = "import sys, ductape; print(sorted({'logging', 'asyncio'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
