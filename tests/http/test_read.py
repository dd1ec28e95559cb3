"""Read API against a real server: filters, cursor pagination, timeline, verify, proofs."""

from __future__ import annotations

import time

from tests.conftest import make_event
from tests.http.conftest import H, R, wait_sealed


def _seed(server, data_dir, n=120):
    events = []
    for i in range(n):
        ev = make_event(i, ts=f"2026-05-29T11:{i // 60:02d}:{i % 60:02d}Z", decision="deny" if i % 10 == 0 else "allow",
                        tool="delete_repo" if i % 7 == 0 else "get_open_invoices", server="billing" if i % 2 else "git")
        events.append(ev)
    assert server.post(json=events).json()["stored"] == n
    assert len(wait_sealed(data_dir, n)) == n
    return events


def _all_pages(server, path, params, limit):
    seen, cursor, pages = [], None, 0
    while True:
        p = dict(params, limit=limit)
        if cursor:
            p["cursor"] = cursor
        r = server.get(path, params=p)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["events"]) <= limit
        seen.extend(body["events"])
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            return seen, pages


def test_events_filters_and_cursor_pagination(server, data_dir):
    events = _seed(server, data_dir)
    got, pages = _all_pages(server, "/v1/events", {}, 25)
    assert pages == 5 and len(got) == 120
    ids = [e["event_id"] for e in got]
    assert len(set(ids)) == 120
    assert ids[0] == "ev-0000119" and ids[-1] == "ev-0000000"  # newest first by default
    asc, _ = _all_pages(server, "/v1/events", {"order": "asc"}, 50)
    assert [e["event_id"] for e in asc] == ids[::-1]
    e = got[0]
    assert e["source"] == "gw1" and e["chain_id"] == "http" and len(e["hash"]) == 64 and len(e["prev_hash"]) == 64
    assert e["args"] == {"customer_id": 119, "note": "invoice lookup 119"}
    denied, _ = _all_pages(server, "/v1/events", {"decision": "deny", "principal": "user_0"}, 100)
    expect = {ev["event_id"] for ev in events if ev["decision"] == "deny" and ev["principal"] == "user_0"}
    assert {x["event_id"] for x in denied} == expect and expect
    tool, _ = _all_pages(server, "/v1/events", {"tool": "delete_repo", "server": "git"}, 100)
    assert {x["event_id"] for x in tool} == {ev["event_id"] for ev in events
                                             if ev["tool"] == "delete_repo" and ev["server"] == "git"}
    window, _ = _all_pages(server, "/v1/events", {"since": "2026-05-29T11:00:30Z", "until": "2026-05-29T13:01:10+02:00"},
                           7)
    assert sorted(x["event_id"] for x in window) == [f"ev-{i:07d}" for i in range(30, 70)]
    r = server.get("/v1/events", params={"session": "no-such-session"})
    assert r.json() == {"events": [], "next_cursor": None}


def test_bad_read_parameters(server, data_dir):
    _seed(server, data_dir, 5)
    for params, status in (({"cursor": "garbage!"}, 400), ({"limit": 0}, 422), ({"limit": 100_000}, 422),
                           ({"since": "yesterday"}, 422), ({"since": "2026-05-29T11:00:00"}, 422),
                           ({"decision": "perhaps"}, 422), ({"order": "sideways"}, 422)):
        r = server.get("/v1/events", params=params)
        assert r.status_code == status, (params, r.text)
        assert set(r.json()) >= {"error", "detail"}
    asc_cursor = server.get("/v1/events", params={"limit": 1, "order": "asc"}).json()["next_cursor"]
    r = server.get("/v1/events", params={"cursor": asc_cursor, "order": "desc"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_cursor"


def test_session_timeline(server, data_dir):
    events = _seed(server, data_dir)
    got, _ = _all_pages(server, "/v1/sessions/s-3/timeline", {}, 3)
    expect = sorted((ev for ev in events if ev["session"] == "s-3"), key=lambda e: e["ts"])
    assert [g["event_id"] for g in got] == [e["event_id"] for e in expect]
    r = server.get("/v1/sessions/s-3/timeline", params={"limit": 2})
    assert r.json()["session"] == "s-3"


def test_verify_and_proofs(server, data_dir):
    from ingest.proofs import verify_bundle
    from ingest.verify import verify

    r = server.get("/v1/verify")
    assert r.json() == {"status": "never_run", "report": None}
    _seed(server, data_dir, 20)
    assert server.get("/v1/proofs/ev-unknown").status_code == 404
    assert server.get("/v1/proofs/bad id!").status_code == 422
    deadline, i = time.time() + 20, 1000
    while True:  # checkpoints are signed when a segment seals after checkpoint_every_seconds: keep traffic going
        r = server.get("/v1/proofs/ev-0000007")
        if r.status_code == 200 or time.time() > deadline:
            break
        assert r.status_code == 409 and r.headers["retry-after"]
        server.post(json=make_event(i))
        i += 1
        time.sleep(0.3)
    assert r.status_code == 200, r.text
    check = verify_bundle(r.json())
    assert check.ok, check.problems
    verify(server.collector.layout)
    body = server.get("/v1/verify").json()
    assert body["status"] == "ok" and body["report"]["ok"] is True
    assert server.client.get("/v1/verify", headers=H).status_code == 403


def test_read_rate_limit(serve_app):
    srv = serve_app(read_rate_limit_per_s=2)
    codes = [srv.get("/v1/verify").status_code for _ in range(8)]
    assert codes[0] == 200 and 429 in codes
    r = srv.get("/v1/verify")
    if r.status_code == 429:
        assert int(r.headers["retry-after"]) >= 1
    assert R
