"""POST /v1/events against a real uvicorn server: auth, formats, partial batches, idempotency,
every limit, malformed bodies, error bodies, headers, backpressure, metrics."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib

import orjson
import pytest

from tests.conftest import make_event
from tests.http.conftest import H2, INGEST_TOKEN, READ_TOKEN, H, R, wait_sealed

SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "cache-control": "no-store",
                    "referrer-policy": "no-referrer"}


def ndjson(events) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events) + b"\n"


def assert_error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) >= {"error", "detail"}
    if code:
        assert body["error"] == code, body
    assert "Traceback" not in r.text
    return body


# ----------------------------------------------------------------------------- auth
def test_auth_failures_are_401_without_hint(server):
    ev = make_event(1)
    c = server.client
    bodies = []
    for hdrs in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic Zm9vOmJhcg=="},
                 {"Authorization": f"Token {INGEST_TOKEN}"}, {"Authorization": "Bearer wrong-token-0123456789"},
                 {"Authorization": f"Bearer {INGEST_TOKEN[:-1]}"}, {"Authorization": f"Bearer {'x' * 5000}"}):
        r = c.post("/v1/events", json=ev, headers=hdrs)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        bodies.append(r.content)
    assert len(set(bodies)) == 1, "missing and wrong keys must get the same answer"
    # A read key cannot ingest and an ingest key cannot read.
    assert_error(c.post("/v1/events", json=ev, headers=R), 403, "forbidden")
    assert_error(c.get("/v1/events", headers=H), 403, "forbidden")
    assert_error(c.get("/v1/events"), 401, "unauthorized")
    assert wait_sealed(server.srv and server.collector.layout.root, 0, timeout=0.1) == []


def test_source_comes_from_the_key_not_the_payload(server, data_dir):
    r = server.post(json=make_event(1))
    assert r.status_code == 200 and r.json()["stored"] == 1
    r = server.post(json=make_event(2), headers=H2)
    assert r.status_code == 200
    forged = dict(make_event(3), source="gw2")  # not a wire field: rejected, never trusted
    r = server.post(json=forged)
    assert r.status_code == 422
    assert r.json()["errors"] == [{"index": 0, "field": "source", "reason": "Extra inputs are not permitted"}]
    rows = wait_sealed(data_dir, 2)
    assert {r["event_id"]: r["source"] for r in rows} == {"ev-0000001": "gw1", "ev-0000002": "gw2"}


def test_keys_minted_on_disk_work_without_restart_and_revocation_applies(server, data_dir):
    from ingest.apikeys import mint_key, revoke_key

    token, key = mint_key(server.collector.layout, "minted-gw")
    hdr = {"Authorization": f"Bearer {token}"}
    deadline = time.time() + 5
    while time.time() < deadline:
        r = server.post(json=make_event(5), headers=hdr)
        if r.status_code == 200:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    assert revoke_key(server.collector.layout, "minted-gw") == 1
    deadline = time.time() + 5
    while time.time() < deadline and r.status_code != 401:
        r = server.post(json=make_event(6), headers=hdr)
        time.sleep(0.2)
    assert r.status_code == 401
    rows = wait_sealed(data_dir, 1)
    assert rows[0]["source"] == "minted-gw"


def test_keyring_compares_every_key():
    from ingest.apikeys import KeyRing
    from ingest.layout import Layout

    ring = KeyRing(Layout.at("/nonexistent-tooltrail"), {"a": "a" * 20, "b": "b" * 20}, {"r": "r" * 20})
    assert ring.authenticate("a" * 20).name == "a"
    assert ring.authenticate("r" * 20).kind == "read"
    assert ring.authenticate("c" * 20) is None
    assert ring.authenticate("") is None
    with pytest.raises(ValueError):
        KeyRing(Layout.at("/nonexistent-tooltrail"), {"short": "tooshort"})


# ----------------------------------------------------------------------------- shapes
def test_single_array_ndjson_and_gzip_bodies(server, data_dir):
    r = server.post(json=make_event(1))
    assert r.status_code == 200
    body = r.json()
    assert body == {"stored": 1, "duplicates": 0, "rejected": 0, "errors": [], "chain_id": "http",
                    "request_id": body["request_id"]}
    assert r.headers["x-request-id"] == body["request_id"]
    for k, v in SECURITY_HEADERS.items():
        assert r.headers[k] == v
    assert "server" not in r.headers
    assert server.post(json=[make_event(i) for i in range(2, 12)]).json()["stored"] == 10
    r = server.post(ndjson(make_event(i) for i in range(12, 22)), headers={"Content-Type": "application/x-ndjson"})
    assert r.json()["stored"] == 10
    gz = gzip.compress(ndjson(make_event(i) for i in range(22, 32)))
    r = server.post(gz, headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
    assert r.json()["stored"] == 10, r.text
    gz = gzip.compress(orjson.dumps([make_event(i) for i in range(32, 37)]))
    r = server.post(gz, headers={"Content-Type": "application/json; charset=utf-8", "Content-Encoding": "gzip"})
    assert r.json()["stored"] == 5
    # CRLF line ends and blank lines are fine.
    body = b"\r\n\r\n".join(orjson.dumps(make_event(i)) for i in range(37, 40))
    assert server.post(body, headers={"Content-Type": "application/x-ndjson"}).json()["stored"] == 3
    assert len(wait_sealed(data_dir, 39)) == 39


def test_partial_batch_stores_valid_items_and_names_each_rejection(server, data_dir):
    events = [make_event(1), {"ts": "2026-05-29T11:04:22Z"}, make_event(2, decision="maybe"), make_event(3),
              make_event(4, principal="p" * 300), "not an object", make_event(5, ts="2026-05-29T11:04:22")]
    r = server.post(json=events)
    assert r.status_code == 207, r.text
    body = r.json()
    assert (body["stored"], body["duplicates"], body["rejected"]) == (2, 0, 5)
    by_index: dict[int, set[str]] = {}
    for e in body["errors"]:
        by_index.setdefault(e["index"], set()).add(e["field"])
        assert e["reason"]
    assert by_index[1] >= {"principal", "session", "tool", "decision"}
    assert by_index[2] == {"decision"} and by_index[4] == {"principal"} and by_index[5] == {"(event)"}
    assert by_index[6] == {"ts"}
    # NDJSON: a broken line is one rejected item, with its line number.
    lines = [orjson.dumps(make_event(10)), b"", b"{broken", orjson.dumps(make_event(11))]
    r = server.post(b"\n".join(lines), headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 207
    err = r.json()["errors"]
    assert err[0]["index"] == 1 and err[0]["line"] == 3 and err[0]["field"] == "(event)"
    assert "invalid JSON" in err[0]["reason"]
    # Everything rejected: 422 with the same body shape.
    r = server.post(json=[{"x": 1}, {"y": 2}])
    assert r.status_code == 422 and r.json()["stored"] == 0 and r.json()["rejected"] == 2
    rows = wait_sealed(data_dir, 4)
    assert sorted(x["event_id"] for x in rows) == ["ev-0000001", "ev-0000003", "ev-0000010", "ev-0000011"]
    from tooltrail.query import ReadOnlyQuery

    q = ReadOnlyQuery.at(data_dir).rows("select reasons, source from quarantine", limit=100)
    assert len(q) == 8 and {x["source"] for x in q} == {"gw1"}


def test_idempotent_retry_counts_duplicates(server, data_dir):
    batch = [make_event(i) for i in range(50)]
    first = server.post(json=batch).json()
    again = server.post(json=batch).json()
    assert (first["stored"], first["duplicates"]) == (50, 0)
    assert (again["stored"], again["duplicates"]) == (0, 50)
    no_ids = [{k: v for k, v in make_event(i).items() if k != "event_id"} for i in range(100, 105)]
    assert server.post(json=no_ids).json()["stored"] == 5
    assert server.post(json=no_ids).json()["duplicates"] == 5  # content-derived ids
    assert len(wait_sealed(data_dir, 55)) == 55


# ----------------------------------------------------------------------------- limits
def test_body_size_limit_413_by_length_and_chunked(serve_app):
    srv = serve_app(max_body_bytes=4096)
    big = orjson.dumps([make_event(i) for i in range(40)])
    assert len(big) > 4096
    body = assert_error(srv.post(big, headers={"Content-Type": "application/json"}), 413, "body_too_large")
    assert body["limit"] == 4096

    def chunks():
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    assert_error(srv.post(chunks(), headers={"Content-Type": "application/json"}), 413, "body_too_large")
    assert srv.post(json=make_event(1)).status_code == 200


def test_batch_item_limit(serve_app):
    srv = serve_app(max_batch_items=5)
    assert_error(srv.post(json=[make_event(i) for i in range(6)]), 413, "too_many_items")
    assert_error(srv.post(ndjson(make_event(i) for i in range(6)), headers={"Content-Type": "application/x-ndjson"}),
                 413, "too_many_items")
    assert srv.post(json=[make_event(i) for i in range(5)]).json()["stored"] == 5


def test_gzip_bomb_stops_at_the_decompressed_limit(serve_app):
    import resource

    srv = serve_app(max_decompressed_bytes=1024 * 1024)
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = co.compress(b"[" + b" " * (128 * 1024 * 1024)) + co.flush()  # 128 MiB of spaces -> ~130 KiB
    assert len(bomb) < 1024 * 1024
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    r = srv.post(bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert_error(r, 413, "body_too_large")
    assert "decompressed" in r.json()["detail"]
    assert time.time() - t0 < 5
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grew_mb < 100, f"server memory grew {grew_mb:.0f} MiB decoding a bomb"
    # Garbage that claims to be gzip, and a truncated stream.
    assert_error(srv.post(b"not gzip at all", headers={"Content-Encoding": "gzip"}), 400, "bad_encoding")
    gz = gzip.compress(orjson.dumps(make_event(1)))
    assert_error(srv.post(gz[:-12], headers={"Content-Encoding": "gzip"}), 400, "bad_encoding")
    assert_error(srv.post(gz, headers={"Content-Encoding": "br"}), 415, "unsupported_encoding")


def test_field_limits_from_the_schema(server):
    cases = {"principal": "p" * 257, "session": "", "event_id": "has space", "tool": "bad\x00tool",
             "args": {"k": "v" * 70_000}, "reason": "r" * 9000}
    for field, value in cases.items():
        r = server.post(json=make_event(1, **{field: value}))
        assert r.status_code == 422, (field, r.text)
        assert r.json()["errors"][0]["field"].split(".")[0] == field
    deep: dict = {}
    cur = deep
    for _ in range(20):
        cur["d"] = {}
        cur = cur["d"]
    r = server.post(json=make_event(1, args=deep))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "args"
    r = server.post(orjson.dumps(make_event(1, args={"pad": "x" * 60_000})) + b"\n" + b'{"x":"' + b"y" * 300_000 + b'"}',
                    headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 207
    assert "larger than" in r.json()["errors"][0]["reason"]


def test_malformed_bodies(server):
    r = server.post(b'{"ts": "2026-05-29T11:04:22Z",\n "principal": oops}', headers={"Content-Type": "application/json"})
    body = assert_error(r, 400, "malformed_json")
    assert body["line"] == 2 and body["position"] == len(b'{"ts": "2026-05-29T11:04:22Z",\n "principal": ')
    assert "line 2" in body["detail"]
    assert_error(server.post(b"[1, 2", headers={"Content-Type": "application/json"}), 400, "malformed_json")
    assert_error(server.post(b"\xff\xfe{}", headers={"Content-Type": "application/json"}), 400, "malformed_json")
    assert_error(server.post(b"", headers={"Content-Type": "application/json"}), 400, "empty_body")
    assert_error(server.post(b"\n\n", headers={"Content-Type": "application/x-ndjson"}), 400, "empty_body")
    assert_error(server.post(b"42", headers={"Content-Type": "application/json"}), 400, "bad_body")
    assert_error(server.post(b"a=b", headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
    assert_error(server.post(b"{}", headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    assert_error(server.client.post("/v1/events?format=no-such-gateway", json=make_event(1), headers=H), 400,
                 "unknown_format")
    assert_error(server.client.post("/v1/events?format=%00bad", json=make_event(1), headers=H), 400, "unknown_format")
    assert_error(server.client.delete("/v1/events", headers=H), 405, "method_not_allowed")
    assert_error(server.client.get("/nope"), 404, "not_found")
    # No content type: read as JSON; NDJSON without its type is a JSON syntax error with a position.
    r = server.post(ndjson([make_event(1), make_event(2)]), headers={"Content-Type": ""})
    assert_error(r, 400, "malformed_json")


def test_slow_body_gets_408(serve_app):
    srv = serve_app(request_timeout_s=1.0)
    s = socket.create_connection(("127.0.0.1", srv.srv.port))
    s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + INGEST_TOKEN.encode()
              + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"ts\":")
    s.settimeout(10)
    t0 = time.time()
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    s.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert 0.8 < time.time() - t0 < 5


def test_rate_limit_per_source_429_with_retry_after(serve_app, data_dir):
    srv = serve_app(rate_limit_events_per_s=20, rate_limit_burst=30, max_batch_items=30)
    assert srv.post(json=[make_event(i) for i in range(30)]).status_code == 200
    r = srv.post(json=[make_event(i) for i in range(30, 40)])
    body = assert_error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    assert "gw1" in body["detail"]
    # Another source has its own bucket.
    assert srv.post(json=[make_event(i) for i in range(100, 110)], headers=H2).status_code == 200
    time.sleep(0.6)
    assert srv.post(json=[make_event(i) for i in range(30, 40)]).status_code == 200
    assert len(wait_sealed(data_dir, 50)) == 50


class _SlowIngestor:
    """Wraps a real Ingestor; submit waits for a gate (to hold batches 'in the WAL')."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()

    def submit(self, *a, **kw):
        self.entered.set()
        self.gate.wait(30)
        return self.inner.submit(*a, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_backpressure_503_when_the_write_path_is_behind(serve_app, data_dir):
    from concurrent.futures import ThreadPoolExecutor

    from ingest.pipeline import Ingestor
    from tests.http.conftest import make_config

    cfg = make_config(data_dir, max_pending_events=100)
    slow = _SlowIngestor(Ingestor.open(cfg, "http"))
    srv = serve_app(ingestor=slow, config=cfg)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(srv.post, json=[make_event(i) for i in range(80)])
        assert slow.entered.wait(10)
        r = srv.post(json=[make_event(i) for i in range(100, 130)])
        assert_error(r, 503, "backpressure")
        assert r.headers["retry-after"] == "1"
        slow.gate.set()
        assert first.result().status_code == 200
    assert srv.post(json=[make_event(i) for i in range(100, 130)]).status_code == 200
    srv.srv.stop()
    slow.inner.close()


class _BrokenIngestor(_SlowIngestor):
    def submit(self, *a, **kw):
        raise RuntimeError("boom with payload secret sk-live-123")


def test_unexpected_errors_are_a_json_500_without_internals(serve_app, data_dir):
    from ingest.pipeline import Ingestor
    from tests.http.conftest import make_config

    cfg = make_config(data_dir)
    broken = _BrokenIngestor(Ingestor.open(cfg, "http"))
    srv = serve_app(ingestor=broken, config=cfg)
    r = srv.post(json=make_event(1))
    assert_error(r, 500, "internal")
    assert "secret" not in r.text and "RuntimeError" not in r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    srv.srv.stop()
    broken.inner.close()


# ----------------------------------------------------------------------------- operations
def test_health_ready_metrics(server):
    assert server.client.get("/healthz").json() == {"status": "ok"}
    r = server.client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready" and r.json()["chain_id"] == "http"
    server.post(json=[make_event(i) for i in range(10)])
    server.post(json=[{"bad": 1}, make_event(20)])
    server.client.post("/v1/events", json=make_event(1))  # 401
    time.sleep(0.5)
    text = server.client.get("/metrics").text
    assert 'tooltrail_http_events_total{outcome="stored",source="gw1"} 11.0' in text
    assert 'tooltrail_http_events_total{outcome="rejected",source="gw1"} 1.0' in text
    assert "tooltrail_http_batch_seconds_bucket" in text
    assert 'tooltrail_http_requests_total{route="/v1/events",status="401"} 1.0' in text
    for name in ("tooltrail_wal_pending_events", "tooltrail_wal_unsealed_events", "tooltrail_segments",
                 "tooltrail_wal_healthy", "tooltrail_chain_events"):
        assert f'{name}{{chain_id="http"}}' in text, name
    assert INGEST_TOKEN not in text and READ_TOKEN not in text


def test_metrics_can_require_a_read_key(serve_app):
    srv = serve_app(metrics_public=False)
    assert srv.client.get("/metrics").status_code == 401
    assert srv.client.get("/metrics", headers=R).status_code == 200


def test_ack_not_durable_in_time_is_503_and_the_retry_is_a_duplicate(serve_app, data_dir):
    from ingest.pipeline import Ingestor
    from tests.http.conftest import make_config

    cfg = make_config(data_dir, request_timeout_s=1.0)
    slow = _SlowIngestor(Ingestor.open(cfg, "http"))
    srv = serve_app(ingestor=slow, config=cfg)
    batch = [make_event(i) for i in range(20)]
    r = srv.post(json=batch)
    assert_error(r, 503, "ack_timeout")
    assert r.headers["retry-after"]
    slow.gate.set()  # the batch becomes durable after all ...
    time.sleep(0.3)
    r = srv.post(json=batch)  # ... so the client's retry is all duplicates
    assert r.status_code == 200 and (r.json()["stored"], r.json()["duplicates"]) in ((0, 20), (20, 0))
    srv.srv.stop()
    slow.inner.close()
    assert len(wait_sealed(data_dir, 20)) == 20
