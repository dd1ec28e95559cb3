"""Broker-free parts of the Kafka collector: names, origins, security settings, producer encoding."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from ingest.kafka import KafkaConfigError, chain_id_for, client_kwargs, describe, encode_event, origin_for, parse_origin
from ingest.layout import CHAIN_ID_RE
from ingest.settings import KafkaSettings


def test_chain_ids_name_topic_and_partition():
    assert chain_id_for("tooltrail.events", 3) == "kafka-tooltrail.events-p3"
    assert chain_id_for("t", 0, prefix="eu1") == "eu1-t-p0"
    long = chain_id_for("x" * 249, 12)
    assert len(long) <= 128 and CHAIN_ID_RE.match(long) and long.endswith("-p12")
    assert long != chain_id_for("x" * 248 + "y", 12), "long topics stay distinct"
    with pytest.raises(ValueError):
        chain_id_for("bad topic", 0)


def test_origins_round_trip():
    o = origin_for("a.b-c", 7, 123456)
    assert o == "kafka:a.b-c:7:123456"
    assert parse_origin(o) == ("a.b-c", 7, 123456)
    assert parse_origin("file.jsonl:12") is None and parse_origin(None) is None and parse_origin("kafka:x:1:y") is None


def test_sasl_and_tls_pass_through_and_are_checked():
    s = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="u",
                      sasl_password="pw-secret")
    kw = client_kwargs(s)
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512" and kw["sasl_plain_username"] == "u"
    assert kw["sasl_plain_password"] == "pw-secret"
    d = describe(s)
    assert "pw-secret" not in repr(d) and "pw-secret" not in repr(s) and "pw-secret" not in s.model_dump_json()
    assert d["sasl_password_set"] is True
    with pytest.raises(KafkaConfigError, match="sasl_mechanism"):
        client_kwargs(KafkaSettings(security_protocol="SASL_SSL", sasl_username="u", sasl_password="p"))
    with pytest.raises(KafkaConfigError, match="sasl_password"):
        client_kwargs(KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u"))
    with pytest.raises(KafkaConfigError, match="SASL_SSL"):
        client_kwargs(KafkaSettings(sasl_mechanism="PLAIN"))
    with pytest.raises(KafkaConfigError, match="TLS"):
        client_kwargs(KafkaSettings(ssl_cafile="/x.pem"))
    ssl_kw = client_kwargs(KafkaSettings(security_protocol="SSL"))
    assert ssl_kw["ssl_context"].check_hostname is True
    with pytest.raises(KafkaConfigError, match="cannot load TLS"):
        client_kwargs(KafkaSettings(security_protocol="SSL", ssl_cafile="/nonexistent/ca.pem"))
    with pytest.raises(ValidationError):
        KafkaSettings(sasl_mechanism="GSSAPI")


def test_producer_keys_by_principal_and_fills_event_id():
    value, key = encode_event({"principal": "alice", "tool": "t"})
    obj = orjson.loads(value)
    assert key == b"alice" and obj["event_id"].startswith("ev-")
    value, key = encode_event(b'{"principal": "bob", "event_id": "e1"}')
    assert key == b"bob" and value == b'{"principal": "bob", "event_id": "e1"}'  # bytes with an id: unchanged
    assert encode_event(b"not json") == (b"not json", None)
    value, key = encode_event({"tool": "t"}, add_event_id=False)
    assert key is None and b"event_id" not in value
