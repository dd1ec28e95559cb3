"""HTTP collector benchmark: sustained events/s and acknowledgement latency (p50/p99) of
`tooltrail serve` for batches of 1, 100 and 1,000 events, next to a floor measured in the same
run: a bare FastAPI endpoint on the same uvicorn stack that parses the same batches and does
nothing else. Plus an open-loop run at a fixed offered rate (default 20,000 events/s) and the
write path alone (Ingestor.submit, no HTTP) as the ceiling the collector can reach.

    python benchmarks/bench_http.py                  # ~2 minutes
    python benchmarks/bench_http.py --workers 2      # collector with 2 processes (chains http-0, http-1)
    python benchmarks/bench_http.py --duration 3 --batches 1000

The load generator is a separate process (asyncio, raw HTTP/1.1 keep-alive, unique event ids,
bodies built from a template so generating load stays cheap). Every acknowledgement of the
collector is durable (fsync'd WAL). Latency is measured from the scheduled send time, so the
open-loop figures include any queueing (no coordinated omission). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastapi import Request
from starlette.responses import Response

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-ingest-token-0123456789abcdef"

# One event as JSON with a hole for the event id (unique per event).
_T0 = b'{"event_id":"bench-'
_T1 = (b'","ts":"2026-05-29T11:04:22Z","principal":"user_8842","token_id":"tok_9f","tool":"get_open_invoices",'
       b'"args":{"customer_id":5512,"note":"invoice lookup"},"decision":"allow","scope_checked":"invoices:read",'
       b'"session":"s_31a","server":"billing","result":"ok","latency_ms":88}')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- floor server
def floor_app():
    import orjson
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/events")
    async def events(request: Request) -> Response:
        body = await request.body()
        items = orjson.loads(body)
        n = len(items) if isinstance(items, list) else 1
        return Response(orjson.dumps({"stored": n, "duplicates": 0, "rejected": 0, "errors": []}),
                        media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    return app


def run_floor(port: int) -> None:
    import uvicorn

    uvicorn.run(floor_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="auto",
                http="auto", server_header=False)


# ----------------------------------------------------------------------------- load generator
class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def request(self, req: bytes) -> int:
        if self.w is None:
            self.r, self.w = await asyncio.open_connection(self.host, self.port)
        self.w.write(req)
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.r.readexactly(length)
        if b"connection: close" in head.lower():
            self.w.close()
            self.w = None
        return status


class Load:
    def __init__(self, host: str, port: int, batch: int, seed: int) -> None:
        self.host, self.port, self.batch = host, port, batch
        self.n = seed * 1_000_000_000
        self.prefix = (f"POST /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
                       "Content-Type: application/json\r\n").encode()

    def next_request(self) -> bytes:
        n0 = self.n
        self.n += self.batch
        body = b"[" + b",".join(_T0 + str(i).encode() + _T1 for i in range(n0, n0 + self.batch)) + b"]"
        return self.prefix + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


async def closed_loop(load: Load, conns: int, duration: float) -> dict:
    lat: list[float] = []
    errors = 0
    acked = 0
    stop = time.perf_counter() + duration

    async def one() -> None:
        nonlocal errors, acked
        c = Conn(load.host, load.port)
        while time.perf_counter() < stop:
            req = load.next_request()
            t0 = time.perf_counter()
            try:
                status = await c.request(req)
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                c.w = None
                await asyncio.sleep(0.01)
                continue
            if status // 100 == 2:
                lat.append(time.perf_counter() - t0)
                acked += load.batch
            else:
                errors += 1

    t_start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(conns)))
    elapsed = time.perf_counter() - t_start
    return _summary(lat, acked, errors, elapsed)


async def open_loop(load: Load, rate: float, duration: float, max_conns: int) -> dict:
    interval = load.batch / rate
    lat: list[float] = []
    errors = 0
    acked = 0
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(max_conns):
        pool.put_nowait(Conn(load.host, load.port))
    tasks = []

    async def send(scheduled: float, req: bytes) -> None:
        nonlocal errors, acked
        c = await pool.get()
        try:
            status = await c.request(req)
            if status // 100 == 2:
                lat.append(time.perf_counter() - scheduled)
                acked += load.batch
            else:
                errors += 1
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            c.w = None
        finally:
            pool.put_nowait(c)

    t_start = time.perf_counter()
    k = 0
    while True:
        scheduled = t_start + k * interval
        if scheduled - t_start >= duration:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(scheduled, load.next_request())))
        k += 1
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t_start
    out = _summary(lat, acked, errors, elapsed)
    out["offered"] = rate
    return out


def _summary(lat: list[float], acked: int, errors: int, elapsed: float) -> dict:
    lat.sort()

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

    return {"events_per_s": round(acked / elapsed), "requests": len(lat), "errors": errors, "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None}


def run_loadgen(spec: dict) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    load = Load("127.0.0.1", spec["port"], spec["batch"], spec["seed"])
    if spec.get("rate"):
        res = asyncio.run(open_loop(load, spec["rate"], spec["duration"], spec["conns"]))
    else:
        res = asyncio.run(closed_loop(load, spec["conns"], spec["duration"]))
    print(json.dumps(res), flush=True)


# ----------------------------------------------------------------------------- write path alone
def run_ingestor_ceiling(data_dir: str, duration: float, threads: int) -> None:
    import threading

    import orjson

    from ingest.pipeline import Ingestor
    from tooltrail.config import load_config

    ing = Ingestor.open(load_config(data_dir=data_dir, env={}), "ceiling")
    counter = iter(range(10**12))
    lock = threading.Lock()
    total = [0]
    stop = time.perf_counter() + duration

    def work() -> None:
        while time.perf_counter() < stop:
            with lock:
                base = next(counter) * 1000
            items = [orjson.loads(_T0 + str(base + i).encode() + _T1) for i in range(1000)]
            res = ing.submit(items, source="bench")
            with lock:
                total[0] += res.stored

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    ing.close()
    print(json.dumps({"events_per_s": round(total[0] / elapsed)}), flush=True)


# ----------------------------------------------------------------------------- orchestration
def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server not ready")


def loadgen(port: int, batch: int, conns: int, duration: float, seed: int, rate: float | None = None) -> dict:
    spec = {"port": port, "batch": batch, "conns": conns, "duration": duration, "seed": seed, "rate": rate}
    out = subprocess.run([sys.executable, __file__, "--loadgen", json.dumps(spec)], capture_output=True, text=True,
                         cwd=ROOT, timeout=duration * 4 + 120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def start(cmd: list[str], env: dict, port: int, log: Path) -> subprocess.Popen:
    fh = open(log, "ab")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=fh)
    fh.close()
    wait_ready(port, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def conns_for(batch: int) -> int:
    return 32 if batch == 1 else 16 if batch <= 100 else 8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    ap.add_argument("--batches", default="1,100,1000", help="batch sizes (default 1,100,1000)")
    ap.add_argument("--workers", type=int, default=1, help="collector processes (default 1)")
    ap.add_argument("--rate", type=float, default=20_000, help="offered events/s of the open-loop run (0 = skip)")
    ap.add_argument("--conns", type=int, default=0, help="connections of the closed-loop runs (default by batch)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    ap.add_argument("--loadgen", help=argparse.SUPPRESS)
    ap.add_argument("--floor-server", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ceiling", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.loadgen:
        run_loadgen(json.loads(args.loadgen))
        return 0
    if args.floor_server:
        run_floor(args.floor_server)
        return 0
    if args.ceiling:
        run_ingestor_ceiling(args.ceiling[0], float(args.ceiling[1]), int(args.ceiling[2]))
        return 0

    batches = [int(b) for b in args.batches.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="tt-bench-http-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TOOLTRAIL_DATA_DIR": str(tmp / "data"), "TOOLTRAIL_API_KEYS": f"bench={TOKEN}",
           "TOOLTRAIL_HTTP__RATE_LIMIT_EVENTS_PER_S": "1e9", "TOOLTRAIL_CONFIG": ""}
    env.pop("TOOLTRAIL_CONFIG")
    print(f"ToolTrail HTTP benchmark: {os.cpu_count()} CPUs, {args.duration:g}s per run, collector workers="
          f"{args.workers}, data dir {tmp}", file=sys.stderr)
    try:
        fport = free_port()
        floor = start([sys.executable, __file__, "--floor-server", str(fport)], env, fport, tmp / "floor.log")
        floor_res = {}
        try:
            for b in batches:
                floor_res[b] = loadgen(fport, b, args.conns or conns_for(b), args.duration, seed=1)
                print(f"  floor     batch {b:>5}: {floor_res[b]}", file=sys.stderr)
            floor_open = loadgen(fport, 100, 64, args.duration, seed=2, rate=args.rate) if args.rate else None
        finally:
            stop(floor)
        tport = free_port()
        serve = start([sys.executable, "-m", "tooltrail.cli", "--log-level", "warning", "serve", "--port", str(tport),
                       "--workers", str(args.workers)], env, tport, tmp / "serve.log")
        tt_res = {}
        try:
            for i, b in enumerate(batches):
                tt_res[b] = loadgen(tport, b, args.conns or conns_for(b), args.duration, seed=10 + i)
                print(f"  tooltrail batch {b:>5}: {tt_res[b]}", file=sys.stderr)
            tt_open = {}
            if args.rate:
                for i, b in enumerate((100, 1000)):
                    tt_open[b] = loadgen(tport, b, 64, args.duration, seed=20 + i, rate=args.rate)
                    print(f"  tooltrail open loop batch {b}: {tt_open[b]}", file=sys.stderr)
        finally:
            stop(serve)
        ceil = subprocess.run([sys.executable, __file__, "--ceiling", str(tmp / "ceiling"), str(args.duration), "4"],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=args.duration * 4 + 120)
        ceiling = json.loads(ceil.stdout.strip().splitlines()[-1]) if ceil.returncode == 0 else {"events_per_s": None}
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    def f(x: float | None, unit: str = "") -> str:
        return "-" if x is None else f"{x:,.0f}{unit}" if unit == "" else f"{x:.1f}{unit}"

    print(f"\nHTTP collector, {os.cpu_count()} CPUs, {args.duration:g}s per run, collector workers={args.workers} "
          "(durable acks: fsync'd WAL)\n")
    print(f"{'run':<30} {'floor ev/s':>12} {'p50':>8} {'p99':>8} | {'tooltrail ev/s':>14} {'p50':>8} {'p99':>8} "
          f"{'errors':>7}")
    for b in batches:
        fl, tt = floor_res[b], tt_res[b]
        print(f"{'closed loop, batch ' + str(b):<30} {f(fl['events_per_s']):>12} {f(fl['p50_ms'], 'ms'):>8} "
              f"{f(fl['p99_ms'], 'ms'):>8} | {f(tt['events_per_s']):>14} {f(tt['p50_ms'], 'ms'):>8} "
              f"{f(tt['p99_ms'], 'ms'):>8} {tt['errors']:>7}")
    if args.rate:
        for b, tt in tt_open.items():
            fl = floor_open if b == 100 else None
            print(f"{f'open loop {args.rate:,.0f} ev/s, batch {b}':<30} "
                  f"{f(fl['events_per_s']) if fl else '':>12} {f(fl['p50_ms'], 'ms') if fl else '':>8} "
                  f"{f(fl['p99_ms'], 'ms') if fl else '':>8} | {f(tt['events_per_s']):>14} {f(tt['p50_ms'], 'ms'):>8} "
                  f"{f(tt['p99_ms'], 'ms'):>8} {tt['errors']:>7}")
    print(f"\nwrite path alone (Ingestor.submit, 4 threads, batches of 1,000, no HTTP): "
          f"{f(ceiling['events_per_s'])} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
