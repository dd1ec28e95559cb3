from __future__ import annotations

import itertools

from detect.traffic import ATTACK_KINDS, exfiltration_session, generate, live
from schemas.event import ToolCallEvent


def test_deterministic_by_seed_and_valid_wire_events():
    a = [(x.event, x.quarantine, x.attack_id) for x in generate(seed=5, days=3, principals=8)]
    b = [(x.event, x.quarantine, x.attack_id) for x in generate(seed=5, days=3, principals=8)]
    assert a == b
    c = [(x.event, x.quarantine, x.attack_id) for x in generate(seed=6, days=3, principals=8)]
    assert a != c
    for ev, _q, _ in a:
        if ev is not None:
            ToolCallEvent.model_validate(ev)


def test_every_attack_kind_is_injected_with_labels(small_traffic):
    kinds = {x.attack_kind for x in small_traffic if x.attack_kind}
    assert kinds == set(ATTACK_KINDS)
    benign = [x for x in small_traffic if x.attack_id is None and x.event is not None]
    assert len(benign) > 5_000
    personas = {x.event["agent"] for x in benign}
    assert len(personas) >= 5
    ts = [x.t for x in small_traffic]
    assert ts == sorted(ts)


def test_exfiltration_session_for_other_suites():
    evs = exfiltration_session(principal="eve", session="s9", start=1772445600.0)
    assert [e["tool"] for e in evs] == ["read_email", "read_file", "send_email"]
    assert {e["session"] for e in evs} == {"s9"}
    for e in evs:
        ToolCallEvent.model_validate(e)


def test_live_mode_uses_current_time_and_injects_attacks():
    now = [1772445600.0]

    def clock() -> float:
        return now[0]

    def sleep(s: float) -> None:
        now[0] += max(s, 0.01)

    out = list(itertools.islice(live(seed=2, rate=50, attack_every_s=5, clock=clock, sleep=sleep), 600))
    assert any(x.attack_id for x in out)
    for x in out:
        if x.event is not None:
            assert abs(ToolCallEvent.model_validate(x.event).ts.timestamp() - now[0]) < 60
