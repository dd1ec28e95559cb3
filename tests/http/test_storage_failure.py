"""Disk full: 503 + Retry-After (never 2xx) while the write-ahead log cannot be written, then
recovery by itself once space is freed. The WAL directory is a small tmpfs (needs root and
mount(8); skipped otherwise). A read-only remount cannot be forced while the log is open for
writing (EBUSY), but EROFS takes the same path as ENOSPC: the write fails -> WalError -> 503."""

from __future__ import annotations

import errno
import os
import subprocess
import time

import pytest

from tests.conftest import make_event
from tests.http.conftest import wait_sealed


def _mount_tmpfs(path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


def _fill(path) -> None:
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def _wait_ready(srv, timeout=15.0) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if srv.client.get("/readyz").status_code == 200:
            return time.time() - t0
        time.sleep(0.1)
    raise AssertionError("collector did not recover")


@pytest.fixture
def wal_tmpfs(data_dir):
    wal = data_dir / "wal"
    if not _mount_tmpfs(wal, "512k"):
        pytest.skip("needs root and tmpfs mounts")
    yield wal
    subprocess.run(["umount", "-l", str(wal)], check=False)


def test_disk_full_503_then_recovery_when_space_is_freed(data_dir, wal_tmpfs, serve_app):
    from ingest.verify import verify

    srv = serve_app()
    acked: set[str] = set()
    a = [make_event(i) for i in range(10)]
    assert srv.post(json=a).status_code == 200
    acked |= {e["event_id"] for e in a}

    # --- disk full
    _fill(wal_tmpfs)
    b = [make_event(i) for i in range(100, 160)]  # ~25 KiB: cannot fit in a partly used page
    r = srv.post(json=b)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "storage_unavailable" and int(r.headers["retry-after"]) >= 1
    ready = srv.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["storage_writable"] is False
    c = [make_event(i) for i in range(200, 210)]
    assert srv.post(json=c).status_code == 503
    assert 'tooltrail_wal_healthy{chain_id="http"} 0.0' in srv.client.get("/metrics").text
    (wal_tmpfs / "filler").unlink()
    _wait_ready(srv)  # recovers without any ingest traffic
    r = srv.post(json=b)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] + r.json()["duplicates"] == len(b)
    assert srv.post(json=c).status_code == 200
    acked |= {e["event_id"] for e in b + c}

    srv.srv.stop()  # graceful: seals the tail, signs a checkpoint
    rows = wait_sealed(data_dir, len(acked))
    ids = [x["event_id"] for x in rows]
    assert len(ids) == len(set(ids)), "an event is stored twice"
    assert set(ids) == acked
    rep = verify(srv.collector.layout, save=False)
    assert rep.ok, rep.to_dict()
