"""A client process for the HTTP durability test: several threads POST batches with unique
event ids; every batch that got a 2xx is appended to OUT (one line of ids). Failed batches
(connection refused/reset while the server is killed, 503) are retried unchanged, so a retry
of a batch that was in fact stored is a duplicate. Runs until STOPFILE exists."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import make_event


def worker(url: str, token: str, out, lock: threading.Lock, stop: Path, tid: int, size: int, stats: dict) -> None:
    n = 0
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    while not stop.exists():
        base = (tid + 1) * 10_000_000 + n * size
        batch = [make_event(base + i) for i in range(size)]
        while not stop.exists():
            try:
                r = client.post("/v1/events", json=batch)
            except httpx.HTTPError:
                stats["errors"] += 1
                time.sleep(0.05)
                continue
            if 200 <= r.status_code < 300:
                body = r.json()
                assert body["stored"] + body["duplicates"] == size, body
                stats["dups"] += body["duplicates"]
                with lock:
                    out.write(" ".join(e["event_id"] for e in batch) + "\n")
                    out.flush()
                break
            stats["errors"] += 1
            time.sleep(0.05)
        n += 1
    client.close()


def main() -> None:
    url, token, out_path, stop = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    threads, size = int(sys.argv[5]), int(sys.argv[6])
    lock = threading.Lock()
    stats = {"errors": 0, "dups": 0}
    with open(out_path, "w") as out:
        ts = [threading.Thread(target=worker, args=(url, token, out, lock, stop, t, size, stats)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    print(f"errors={stats['errors']} duplicates={stats['dups']}", flush=True)


if __name__ == "__main__":
    main()
