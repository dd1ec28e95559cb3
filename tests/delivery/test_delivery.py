"""Webhook delivery against a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import time

import orjson
import pytest

from detect.alerts import AlertStore
from detect.delivery import attach
from detect.delivery.outbox import append_request, read_attempts, read_destinations, read_messages
from tests.delivery.conftest import SECRET, SECRET2, hook, make_config, raise_alert, snippet_verifier, wait
from tests.delivery.receiver import Receiver


def _states(cfg):
    return [m["state"] for m in read_messages(cfg.layout.state_dir)]


def test_signature_verifies_with_the_documented_snippet_and_rotation(data_dir, receiver):
    cfg = make_config(data_dir, [hook(receiver.url, secrets=[SECRET2, SECRET])])
    store = AlertStore(None)
    with attach(store, cfg):
        aid = raise_alert(store)
        assert receiver.wait_for(lambda r: len(r) == 1)
    verify_webhook = snippet_verifier()
    req = receiver.received[0]
    assert verify_webhook(SECRET, req.headers, req.body)        # old secret still accepted ...
    assert verify_webhook(SECRET2, req.headers, req.body)       # ... and the new one
    assert len(req.headers["webhook-signature"].split()) == 2
    assert not verify_webhook(SECRET, req.headers, req.body.replace(b"high", b"low!"))
    assert not verify_webhook("whsec_" + "A" * 43 + "=", req.headers, req.body)
    stale = dict(req.headers, **{"webhook-timestamp": str(int(req.headers["webhook-timestamp"]) - 3600)})
    assert not verify_webhook(SECRET, stale, req.body)
    from detect.delivery.signing import verify

    assert verify(SECRET, req.headers, req.body)
    body = orjson.loads(req.body)
    assert body["type"] == "alert.firing"
    d = body["data"]
    assert d["alert_id"] == aid and d["status"] == "firing" and d["alert_status"] == "open"
    assert d["rule"] == {"id": "TT-EXFIL-001", "version": 1, "title": "Exfiltration chain", "severity": "high",
                         "tags": ["exfiltration"], "runbook": "1. look", "description": "desc", "detector": "sequence"}
    assert d["entities"]["principal"] == "mallory" and d["entities"]["session"] == "s-1"
    assert d["entities"]["tools"] == ["send_email"]
    assert d["evidence"][0] == {"event_id": "s-1-0", "chain_id": "http", "seq": 0, "hash": "ab" * 32,
                                "ts": d["first_seen"]}
    assert d["match_count"] == 1 and d["dedup_key"] == "TT-EXFIL-001|session=s-1"
    assert d["links"]["alert"] == f"http://127.0.0.1:8050/alerts?id={aid}"
    assert "session=s-1" in d["links"]["timeline"] and f"alert={aid}" in d["links"]["timeline"]


def test_fails_twice_then_succeeds_delivers_exactly_once_with_one_id(data_dir):
    from structlog.testing import capture_logs

    rcv = Receiver(script=[(500, {}), (503, {})])
    try:
        cfg = make_config(data_dir, [hook(rcv.url)])
        store = AlertStore(None)
        with capture_logs() as logs, attach(store, cfg) as disp:
            aid = raise_alert(store)
            assert rcv.wait_for(lambda r: any(x.status == 200 for x in r))
            assert wait(lambda: _states(cfg) == ["delivered"])
            raise_alert(store)  # the same match again (a detector replay): no new message
            time.sleep(0.5)
            assert disp.stats["delivered"] == 1
        got = rcv.received
        assert [x.status for x in got] == [500, 503, 200]
        assert len({x.headers["webhook-id"] for x in got}) == 1
        assert len({x.body for x in got}) == 1
        verify_webhook = snippet_verifier()
        assert all(verify_webhook(SECRET, x.headers, x.body) for x in got)
        msgs = read_messages(cfg.layout.state_dir, alert_id=aid)
        assert len(msgs) == 1 and msgs[0]["attempts"] == 3 and msgs[0]["last_status"] == 200
        log = read_attempts(cfg.layout.state_dir, [msgs[0]["msg_id"]])
        assert [(a["n"], a["status"], a["outcome"]) for a in log] == [(1, 500, "retry"), (2, 503, "retry"),
                                                                      (3, 200, "delivered")]
        assert all(a["latency_ms"] is not None and a["latency_ms"] >= 0 for a in log)
        assert msgs[0]["msg_id"] == got[0].headers["webhook-id"]
        attempts = [x for x in logs if x["event"] == "delivery_attempt"]
        assert [(x["attempt"], x["status"], x["outcome"]) for x in attempts] == [(1, 500, "retry"), (2, 503, "retry"),
                                                                                 (3, 200, "delivered")]
        assert not [x for x in logs if x["event"] == "delivery_error"]
    finally:
        rcv.close()


def test_retry_after_is_honoured(data_dir):
    rcv = Receiver(script=[(429, {"Retry-After": "2"}), (503, {"Retry-After": "1"})])
    try:
        cfg = make_config(data_dir, [hook(rcv.url, backoff_base_s=0.01, backoff_max_s=0.02)])
        store = AlertStore(None)
        with attach(store, cfg):
            raise_alert(store)
            assert rcv.wait_for(lambda r: len(r) == 3 and r[-1].status == 200, timeout=20)
        t = [x.at for x in rcv.received]
        assert t[1] - t[0] >= 1.95, t
        assert t[2] - t[1] >= 0.95, t
        msg = read_messages(cfg.layout.state_dir)[0]
        assert [a["retry_after"] for a in read_attempts(cfg.layout.state_dir, [msg["msg_id"]])] == [2.0, 1.0, None]
    finally:
        rcv.close()


def test_410_disables_the_destination_until_enabled(data_dir):
    rcv = Receiver(script=[(410, {})])
    other = Receiver()
    try:
        cfg = make_config(data_dir, [hook(rcv.url), hook(other.url, name="audit")])
        store = AlertStore(None)
        with attach(store, cfg):
            raise_alert(store, session="s-1")
            assert wait(lambda: {(m["destination"], m["state"]) for m in read_messages(cfg.layout.state_dir)}
                        == {("ops", "dead"), ("audit", "delivered")})
            raise_alert(store, session="s-2")
            assert other.wait_for(lambda r: len(r) == 2)
            time.sleep(0.5)
            assert len(rcv.received) == 1  # the disabled destination gets nothing more
            dests = {d["destination"]: d for d in read_destinations(cfg.layout.state_dir)}
            assert not dests["ops"]["enabled"] and "410" in dests["ops"]["disabled_reason"]
            assert dests["ops"]["pending"] == 1 and dests["audit"]["enabled"]
            # an operator re-enables it: the held message goes out
            append_request(cfg.layout.state_dir, "outbox", {"op": "enable", "destination": "ops"})
            assert rcv.wait_for(lambda r: len(r) == 2 and r[-1].status == 200)
        dead = [m for m in read_messages(cfg.layout.state_dir) if m["state"] == "dead"]
        assert len(dead) == 1 and dead[0]["last_status"] == 410
    finally:
        rcv.close()
        other.close()


def test_dead_letter_after_last_attempt_then_manual_resend_same_id(data_dir):
    rcv = Receiver(default=(500, {}))
    try:
        cfg = make_config(data_dir, [hook(rcv.url, max_attempts=3)])
        store = AlertStore(None)
        with attach(store, cfg):
            aid = raise_alert(store)
            assert wait(lambda: _states(cfg) == ["dead"])
            assert len(rcv.received) == 3
            rcv.default = (200, {})
            append_request(cfg.layout.state_dir, "outbox", {"op": "resend", "id": aid})
            assert rcv.wait_for(lambda r: len(r) == 4 and r[-1].status == 200)
            assert wait(lambda: _states(cfg) == ["delivered"])
        assert len({x.headers["webhook-id"] for x in rcv.received}) == 1
        msg = read_messages(cfg.layout.state_dir)[0]
        log = read_attempts(cfg.layout.state_dir, [msg["msg_id"]])
        assert [(a["n"], a["outcome"]) for a in log] == [(1, "retry"), (2, "retry"), (3, "dead"), (4, "delivered")]
    finally:
        rcv.close()


def test_private_and_loopback_targets_are_refused_by_default(data_dir, receiver):
    cfg = make_config(data_dir, [hook(receiver.url, allow_private=False)])
    store = AlertStore(None)
    with attach(store, cfg):
        raise_alert(store)
        assert wait(lambda: _states(cfg) == ["dead"])
    assert receiver.received == []
    msg = read_messages(cfg.layout.state_dir)[0]
    assert msg["attempts"] == 1 and "private" in msg["last_error"]


@pytest.mark.parametrize("where", ["other_host", "same_origin"])
def test_redirects_are_only_followed_to_the_same_origin(data_dir, where):
    target = Receiver()
    loc = f"http://127.0.0.1:{target.port}/elsewhere" if where == "other_host" else "/moved"
    rcv = Receiver(script=[(307, {"Location": loc})], default=(200, {}))
    try:
        cfg = make_config(data_dir, [hook(rcv.url, max_attempts=1)])
        store = AlertStore(None)
        with attach(store, cfg):
            raise_alert(store)
            assert wait(lambda: _states(cfg) in (["dead"], ["delivered"]))
        msg = read_messages(cfg.layout.state_dir)[0]
        if where == "other_host":
            assert target.received == [] and msg["state"] == "dead"
            assert "another origin" in msg["last_error"]
        else:
            assert msg["state"] == "delivered"
            assert [x.path for x in rcv.received] == ["/hook", "/moved"]
    finally:
        rcv.close()
        target.close()


def test_routing_by_severity_tags_and_rule_ids(data_dir):
    from detect.delivery.payloads import routes
    from detect.settings import WebhookDestination

    store = AlertStore(None)
    raise_alert(store, severity="medium", tags=("exfiltration", "prompt_injection"))
    a = store.alerts()[0]

    def d(**kw):
        return WebhookDestination(name="x", url="https://hooks.example.com/x", **kw)

    assert routes(d(), a, "firing")
    assert not routes(d(), a, "updated")                  # default: firing + resolved
    assert routes(d(on=["updated"]), a, "updated")
    assert not routes(d(min_severity="high"), a, "firing")
    assert routes(d(severities=["medium"]), a, "firing")
    assert routes(d(tags=["prompt_injection", "x"]), a, "firing")
    assert not routes(d(tags=["supply_chain"]), a, "firing")
    assert routes(d(rule_ids=["TT-EXFIL-*"]), a, "firing")
    assert not routes(d(rule_ids=["TT-AUTHZ-*"]), a, "firing")
    assert not routes(d(exclude_rule_ids=["TT-EXFIL-001"]), a, "firing")
    assert not routes(d(enabled=False), a, "firing")


def test_config_validation_is_secure_by_default():
    from pydantic import ValidationError

    from detect.settings import WebhookDestination

    with pytest.raises(ValidationError, match="https"):
        WebhookDestination(name="x", url="http://hooks.example.com/")
    with pytest.raises(ValidationError, match="whsec_"):
        WebhookDestination(name="x", url="https://hooks.example.com/", secrets=["plain"])
    with pytest.raises(ValidationError, match="routing_key"):
        WebhookDestination(name="pd", kind="pagerduty")
    w = WebhookDestination(name="x", url="https://hooks.example.com/T0k3n", secrets=[SECRET])
    assert "T0k3n" not in repr(w) and SECRET not in repr(w)


def test_slack_and_pagerduty_payloads_and_no_secret_on_disk_or_in_logs(data_dir, capfd):
    from structlog.testing import capture_logs

    slack = Receiver()
    pd = Receiver(default=(202, {}))
    try:
        rk = "R0UT1NGKEY-supersecret"
        cfg = make_config(data_dir, [
            hook(slack.url + "/T000/B000/XXXXsecretpath", name="slack", kind="slack", secrets=[]),
            {"name": "pd", "kind": "pagerduty", "url": pd.url, "routing_key": rk, "allow_private": True, "allow_http": True,
             "backoff_base_s": 0.05, "on": ["firing", "updated", "resolved"]},
        ])
        store = AlertStore(None)
        with capture_logs() as logs, attach(store, cfg):
            aid = raise_alert(store, session="<https://evil.example|click me>")
            assert slack.wait_for(lambda r: len(r) == 1) and pd.wait_for(lambda r: len(r) == 1)
            store.set_status(aid, "resolved", who="alice", note="benign")
            store.dirty[aid] = "status"  # what the store's owner does on a status change
            store.flush()
            assert pd.wait_for(lambda r: len(r) == 2)
        sm = orjson.loads(slack.received[0].body)
        assert "blocks" in sm and aid in sm["text"]
        flat = json.dumps(sm)
        assert "<https://evil.example|click me>" not in flat and "&lt;https://evil.example|click me&gt;" in flat
        trig, res = (orjson.loads(x.body) for x in pd.received)
        assert trig["routing_key"] == rk and trig["event_action"] == "trigger" and trig["dedup_key"] == aid
        assert trig["payload"]["severity"] == "error" and trig["payload"]["summary"].startswith("[TT-EXFIL-001]")
        assert res == {"routing_key": rk, "event_action": "resolve", "dedup_key": aid}
        raw = b"".join(p.read_bytes() for p in (cfg.layout.state_dir / "delivery").glob("*"))
        assert rk.encode() not in raw and b"XXXXsecretpath" not in raw
        out, err = capfd.readouterr()
        text = json.dumps(logs, default=str)
        for s in (rk, "XXXXsecretpath", SECRET):
            assert s not in out and s not in err and s not in text
        assert "delivery_attempt" in text and "delivery_error" not in text
    finally:
        slack.close()
        pd.close()


def test_second_owner_is_refused(data_dir, receiver):
    from detect.delivery import OutboxBusyError

    cfg = make_config(data_dir, [hook(receiver.url)])
    with attach(AlertStore(None), cfg):
        with pytest.raises(OutboxBusyError):
            attach(AlertStore(None), cfg)
        other = attach(AlertStore(None), cfg, name="worker-1")  # a second detector process uses its own outbox
        other.close()
    assert attach(AlertStore(None), make_config(data_dir, [])).active is False  # no destinations: no-op


def test_pending_updates_of_one_alert_coalesce(data_dir):
    rcv = Receiver(default=(503, {"Retry-After": "30"}))
    try:
        cfg = make_config(data_dir, [hook(rcv.url, on=["firing", "updated"])])
        store = AlertStore(None)
        with attach(store, cfg):
            raise_alert(store, n=1)
            assert rcv.wait_for(lambda r: len(r) == 1)        # firing: attempted, now waiting 30 s
            for n in (2, 3, 4):                                 # three more matches fold into the alert
                raise_alert(store, n=n)
            msgs = read_messages(cfg.layout.state_dir)
        assert sorted(m["event"] for m in msgs) == ["firing", "updated"]   # one pending update: the latest
        upd = [m for m in msgs if m["event"] == "updated"][0]
        from detect.delivery.outbox import Outbox

        ob = Outbox(cfg.layout.state_dir)
        try:
            payload = ob.db.execute("SELECT payload FROM messages WHERE msg_id=?", (upd["msg_id"],)).fetchone()[0]
        finally:
            ob.close()
        assert orjson.loads(payload)["data"]["evidence_total"] == 4
    finally:
        rcv.close()
