"""Latency the auditing proxy adds to a tool call, against calling the same server directly.

One run, same client library, same example server (tests/mcp/example_server.py), calls
interleaved (direct, proxied, direct, proxied, ...) so both see the same machine state.
The proxy records every call and delivers it through the real write path (embedded
delivery into a temporary data dir: validation, redaction, hash chain, fsync'd WAL) in its
background thread, so the figure includes the auditing cost, not just the forwarding.

    python benchmarks/bench_proxy.py               # ~40 s on 2 cores
    python benchmarks/bench_proxy.py --calls 1000

Target: p50 overhead <= 2 ms per tool call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "tests" / "mcp" / "example_server.py"
CLI = "import sys; from tooltrail.cli import main; sys.exit(main(sys.argv[1:]))"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(port)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_with(marker: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    out.append(int(d.name))
            except OSError:
                continue
    return out


async def measure(direct, proxied, args: dict, calls: int, warmup: int, marker: str) -> dict:
    async with direct, proxied:
        for c in (direct, proxied):
            await c.list_tools()
            for _ in range(warmup):
                await c.call_tool("echo", args)
        pids = pids_with(marker)
        cpu0 = sum(cpu_seconds(pid) for pid in pids)
        d, p = [], []
        for _ in range(calls):
            t = time.perf_counter()
            await direct.call_tool("echo", args)
            d.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await proxied.call_tool("echo", args)
            p.append((time.perf_counter() - t) * 1000)
        cpu_us = (sum(cpu_seconds(pid) for pid in pids) - cpu0) / calls * 1e6 if pids else float("nan")
    diff = [b - a for a, b in zip(d, p, strict=True)]
    return {"direct_p50": statistics.median(d), "proxy_p50": statistics.median(p),
            "over_p50": statistics.median(p) - statistics.median(d), "over_paired_p50": statistics.median(diff),
            "over_p90": pct(p, 90) - pct(d, 90), "over_p99": pct(p, 99) - pct(d, 99), "proxy_cpu_us": cpu_us}


def audit_cost_us(spool_dir: Path, n: int = 5000) -> float:
    """What the auditing itself adds on the call path: build the event, append it to the spool."""
    from ingest.emitter import Emitter, Spool
    from ingest.mcp.events import build_event

    em = Emitter(None, Spool(spool_dir))
    t0 = time.perf_counter()
    for i in range(n):
        em.emit(build_event(ts=time.time(), principal="bench", session="s", tool="echo", args={"text": "hello"},
                            decision="allow", agent="client/1.0", server="bench", server_version="1.2.3",
                            tool_description_hash="ab" * 32, result="ok", latency_ms=1.5, result_bytes=5,
                            labels={"collector": "tooltrail-proxy", "transport": "stdio", "jsonrpc.request_id": str(i)}))
    us = (time.perf_counter() - t0) / n * 1e6
    em.close()
    return us


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--mode", default="legacy", help="client protocol negotiation: legacy (default) or auto")
    ap.add_argument("--embedded", action="store_true", help="embedded delivery instead of a tooltrail serve process")
    a = ap.parse_args()

    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

    tmp = Path(tempfile.mkdtemp(prefix="tt-bench-proxy-"))
    data = tmp / "data"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TOOLTRAIL_DATA_DIR=str(data), FASTMCP_LOG_LEVEL="WARNING")
    env.pop("TOOLTRAIL_COLLECTOR_URL", None)
    server = [sys.executable, str(EXAMPLE)]
    procs: list[subprocess.Popen] = []

    def proxy_argv(name: str, *extra: str) -> list[str]:
        return [sys.executable, "-c", CLI, "--log-level", "warning", "proxy", "--name", name, "--principal",
                "bench", "--spool-dir", str(tmp / "spool"), *extra]

    def stdio(argv: list[str]) -> Client:
        return Client(StdioTransport(command=argv[0], args=argv[1:], env=env, keep_alive=False), mode=a.mode)

    rows = []
    small = {"text": "hello"}
    big = {"text": "x" * 8192}
    try:
        if not a.embedded:
            token = "bench-proxy-token-0123456789abcdef"
            cport = free_port()
            procs.append(subprocess.Popen([sys.executable, "-c", CLI, "--log-level", "warning", "serve", "--port",
                                           str(cport)], env=dict(env, TOOLTRAIL_API_KEYS=f"proxy-bench={token}"),
                                          stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(cport)
            env.update(TOOLTRAIL_COLLECTOR_URL=f"http://127.0.0.1:{cport}", TOOLTRAIL_COLLECTOR_TOKEN=token)
        for label, args in (("stdio -> stdio, 5 B arg", small), ("stdio -> stdio, 8 KiB arg", big)):
            name = "bench-" + str(len(rows))
            r = asyncio.run(measure(stdio(server), stdio(proxy_argv(name, "--", *server)), args, a.calls, a.warmup,
                                    f"--name {name} "))
            rows.append((label, r))
        up, px = free_port(), free_port()
        procs.append(subprocess.Popen([*server, "--http", str(up)], env=env, stdin=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_port(up)
        procs.append(subprocess.Popen(proxy_argv("bench-http", "--url", f"http://127.0.0.1:{up}/mcp", "--serve",
                                                 "http", "--port", str(px)), env=env, stdin=subprocess.DEVNULL))
        wait_port(px)
        r = asyncio.run(measure(Client(StreamableHttpTransport(f"http://127.0.0.1:{up}/mcp"), mode=a.mode),
                                Client(StreamableHttpTransport(f"http://127.0.0.1:{px}/mcp"), mode=a.mode),
                                small, a.calls, a.warmup, "--name bench-http "))
        rows.append(("http -> http, 5 B arg", r))
    finally:
        for p in reversed(procs):  # proxy and server first, the collector last (it seals on SIGTERM)
            p.terminate()
            p.wait(60)

    from tooltrail.query import ReadOnlyQuery

    audit_us = audit_cost_us(tmp / "micro")

    stored = ReadOnlyQuery.at(data).sql("select count(*) as n from events").to_pylist()[0]["n"]
    expected = len(rows) * (a.calls + a.warmup)

    load = os.getloadavg()[0]
    print(f"\ntooltrail proxy overhead per tool call ({a.calls} interleaved calls per row, client mode={a.mode}, "
          f"{os.cpu_count()} cores, load average {load:.1f})")
    head = f"{'path (client -> proxy -> server)':28} {'direct p50':>11} {'proxied p50':>12} {'overhead p50':>13} " \
           f"{'paired p50':>11} {'ovh p90':>8} {'ovh p99':>8} {'proxy CPU/call':>15}"
    print(head)
    print("-" * len(head))
    for label, r in rows:
        print(f"{label:28} {r['direct_p50']:>9.3f}ms {r['proxy_p50']:>10.3f}ms {r['over_p50']:>11.3f}ms "
              f"{r['over_paired_p50']:>9.3f}ms {r['over_p90']:>6.2f}ms {r['over_p99']:>6.2f}ms "
              f"{r['proxy_cpu_us'] / 1000:>13.2f}ms")
    print(f"{'of which auditing (event + spool write)':40} {audit_us:.1f} us per call (in-process micro-benchmark)")
    worst = max(r["over_p50"] for _, r in rows)
    how = "embedded in the proxy" if a.embedded else "via tooltrail serve"
    print(f"\nevents stored through the write path ({how}): {stored} of {expected} proxied calls")
    print(f"target p50 overhead <= 2 ms: {'met' if worst <= 2.0 else 'NOT met'} (worst row {worst:.3f} ms)")
    return 0 if stored == expected else 1


if __name__ == "__main__":
    sys.exit(main())
