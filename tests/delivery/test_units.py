"""Delivery building blocks: address policy, Retry-After, backoff, message ids."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from detect.alerts import AlertStore
from detect.delivery.dispatcher import backoff, parse_retry_after
from detect.delivery.netguard import address_allowed
from detect.delivery.payloads import event_for, message_id
from detect.settings import WebhookDestination
from tests.delivery.conftest import raise_alert


@pytest.mark.parametrize("ip,ok", [("8.8.8.8", True), ("2606:4700::1111", True), ("127.0.0.1", False),
                                   ("10.1.2.3", False), ("192.168.0.1", False), ("172.16.0.1", False),
                                   ("169.254.169.254", False), ("100.64.0.1", False), ("::1", False),
                                   ("::ffff:127.0.0.1", False), ("fd00::1", False), ("0.0.0.0", False),
                                   ("224.0.0.1", False)])
def test_address_policy(ip, ok):
    assert address_allowed(ip, False) is ok
    assert address_allowed(ip, True) is (ip not in ("0.0.0.0", "224.0.0.1"))


def test_retry_after_forms():
    now = datetime(2026, 5, 29, 12, tzinfo=UTC).timestamp()
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(format_datetime(datetime(2026, 5, 29, 12, 0, 30, tzinfo=UTC), usegmt=True), now) == 30.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_backoff_is_exponential_capped_and_jittered():
    d = WebhookDestination(name="x", url="https://h.example.com/", backoff_base_s=2, backoff_max_s=60)
    rng = random.Random(1)
    for n, hi in [(1, 2), (2, 4), (3, 8), (6, 60), (20, 60)]:
        v = backoff(d, n, rng)
        assert hi / 2 <= v <= hi


def test_message_ids_are_stable_per_alert_state():
    store = AlertStore(None)
    raise_alert(store)
    a = store.alerts()[0]
    assert message_id("ops", a, "firing") == message_id("ops", a.model_copy(update={"match_count": 9}), "firing")
    assert message_id("ops", a, "firing") != message_id("pd", a, "firing")
    assert message_id("ops", a, "updated") != message_id("ops", a.model_copy(update={"match_count": 9}), "updated")
    assert event_for("created", a) == "firing" and event_for("updated", a) == "updated"
    assert event_for("status", a.model_copy(update={"status": "resolved"})) == "resolved"

